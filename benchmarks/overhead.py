"""What PLRS costs inside the training step, and whether it stays on device.

The MLP and ResNet-20 at batch 128 on random data, `engine.train_step` with
SGD at a constant rate, at PLRS and at PLRS through `inject_hyperparams`:
per-step wall-clock and CPU time, ratios to the constant rate (goal <= 1.01)
with 95% bootstrap intervals, under `jax.transfer_guard('disallow')`; and
one PLRS evaluation's extra cost in a compiled loop, the ratio it predicts.

    flock /tmp/plrs_bench.lock python -m benchmarks.overhead [--quick]
"""

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

import plrs_jax
from benchmarks import common
from benchmarks import workloads
from benchmarks.common import plt
from train import engine

CANDIDATES = ('constant', 'plrs', 'inject_hyperparams')
CONSTANT_LR = 0.085  # the midpoint of the bounds
BOUNDS = (0.07, 0.1)
GOAL_RATIO = 1.01
# model: (batch size, timed rounds, seconds per round).
FULL = {'mlp': (128, 40, 0.25), 'resnet20': (128, 10, 2.0)}
QUICK = {'mlp': (8, 2, 0.0), 'resnet20': (8, 2, 0.0)}


def plrs_rate() -> optax.Schedule:
  """The PLRS schedule of run 0."""
  return plrs_jax.plrs_schedule(engine.run_keys(0).schedule, *BOUNDS)


class StepLoop:
  """A compiled step owning the state it donates: each call runs a step,
  waits, adds its CPU time to `cpu_seconds` and returns the (device) loss."""

  def __init__(self, fn, state, batch):
    self.fn, self.state, self.batch = fn, state, batch
    self.cpu_seconds = []

  def __call__(self) -> jax.Array:
    start = time.process_time()
    self.state, metrics = self.fn(self.state, self.batch)
    jax.block_until_ready(metrics['loss'])
    self.cpu_seconds.append(time.process_time() - start)
    return metrics['loss']


def transfer_free(loop: StepLoop) -> bool | str:
  """Runs a step under `transfer_guard('disallow')`: True, or the error."""
  try:
    with jax.transfer_guard('disallow'):
      loop()
    return True
  except Exception as error:  # pylint: disable=broad-except
    return f'{type(error).__name__}: {error}'


def compare(times: np.ndarray, baseline: np.ndarray,
            baseline_name: str) -> dict[str, Any]:
  """Median time per step, its ratio to the baseline's, and the ratio's 95%
  bootstrap interval over paired rounds (round r of both)."""
  ratio = lambda a, b, axis=-1: np.median(a, axis) / np.median(b, axis)
  ci = stats.bootstrap((times, baseline), ratio, paired=True, rng=0,
                       n_resamples=2000, method='percentile')
  return {'median_s_per_step': float(np.median(times)),
          f'ratio_vs_{baseline_name}': float(ratio(times, baseline)),
          'ratio_ci95': [float(v) for v in ci.confidence_interval],
          'round_s_per_step': times.tolist()}


def measure(loops: dict[str, StepLoop], baseline: str, rounds: int,
            round_seconds: float) -> dict[str, Any]:
  """Times the loops in interleaved rounds of about `round_seconds`, under
  the transfer guard if every loop passed it: per loop, `compare`'s entry for
  the wall clock, and for CPU time under 'cpu', and `transfer_free`."""
  for loop in loops.values():
    loop()
  free = {name: transfer_free(loop) for name, loop in loops.items()}
  start = time.perf_counter()
  loops[baseline]()
  steps = min(1000, max(1, math.ceil(
      round_seconds / (time.perf_counter() - start))))
  print(f'{rounds} rounds of {steps} steps', flush=True)
  for loop in loops.values():
    loop.cpu_seconds = []
  guard = 'disallow' if all(v is True for v in free.values()) else 'allow'
  with jax.transfer_guard(guard):
    wall = common.time_interleaved(loops, rounds=rounds, calls_per_round=steps)
  # Per round, the mean of its steps, after time_interleaved's warm-up call.
  cpu = {name: np.reshape(loop.cpu_seconds[1:], (rounds, steps)).mean(1)
         for name, loop in loops.items()}
  return {'rounds': rounds, 'steps_per_round': steps, 'candidates': {
      name: {**compare(wall[name], wall[baseline], baseline),
             'cpu': compare(cpu[name], cpu[baseline], baseline),
             'transfer_free': free[name]} for name in loops}}


def measure_model(name: str, batch_size: int, rounds: int,
                  round_seconds: float) -> dict[str, Any]:
  """The three candidates on one model."""
  w = workloads.workload(name, batch_size)
  plrs = plrs_rate()
  optimizers = {'constant': optax.sgd(CONSTANT_LR), 'plrs': optax.sgd(plrs),
                'inject_hyperparams': optax.inject_hyperparams(optax.sgd)(
                    learning_rate=plrs)}
  loops = {c: StepLoop(jax.jit(workloads.train_fn(w), donate_argnums=0),
                       workloads.train_state(w, tx), w.batch)
           for c, tx in optimizers.items()}
  print(f'{name}, batch {batch_size}: ', end='')
  return {'batch_size': batch_size,
          **measure(loops, 'constant', rounds, round_seconds)}


def schedule_cost(quick: bool) -> dict[str, Any]:
  """Microseconds per schedule evaluation inside a compiled loop."""
  loop_steps, rounds = (100, 3) if quick else (200_000, 30)
  # A traced trip count keeps the loop a loop: XLA cannot unroll or fold it.
  n = jnp.asarray(loop_steps, jnp.int32)
  loops = {}
  for name, schedule in (('constant', optax.constant_schedule(CONSTANT_LR)),
                         ('plrs', plrs_rate())):
    summed = jax.jit(lambda n, s=schedule: jax.lax.fori_loop(
        0, n, lambda i, total: total + s(i), jnp.float32(0)))
    loops[name] = lambda summed=summed: summed(n)
  us = {name: t * 1e6 / loop_steps for name, t in
        common.time_interleaved(loops, rounds=rounds).items()}
  return {'loop_steps': loop_steps, 'rounds': rounds, **{
      name: {'us_per_evaluation_in_loop': float(np.median(t)),
             'round_us_per_evaluation_in_loop': t.tolist()}
      for name, t in us.items()},
          'plrs_extra_us_per_evaluation_in_loop': float(
              np.median(us['plrs']) - np.median(us['constant']))}


def plot(models: dict[str, Any]):
  """CPU time per step of each round, per candidate and model."""
  fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.2))
  for ax, (model, entry) in zip(axes, models.items()):
    cpu = [entry['candidates'][c]['cpu'] for c in CANDIDATES]
    ax.boxplot([np.multiply(s['round_s_per_step'], 1e3) for s in cpu],
               tick_labels=[f'{c}\nx{s["ratio_vs_constant"]:.3f}'
                            for c, s in zip(CANDIDATES, cpu)])
    ax.set_ylabel('CPU ms per step, over the rounds')
    ax.set_title(f'{model}, batch {entry["batch_size"]}')
  fig.suptitle('PLRS in the jitted train step: CPU time per step against a '
               f'constant rate (ratio annotated; goal <= {GOAL_RATIO})')
  fig.tight_layout()
  return fig


def main() -> None:
  args = common.parse_args(__doc__)
  models = {name: measure_model(name, *sizes)
            for name, sizes in (QUICK if args.quick else FULL).items()}
  schedule = schedule_cost(args.quick)
  extra_us = schedule['plrs_extra_us_per_evaluation_in_loop']
  for entry in models.values():
    step_us = entry['candidates']['constant']['cpu']['median_s_per_step'] * 1e6
    entry['predicted_ratio_from_schedule_cost'] = 1 + max(extra_us, 0) / step_us
  rows = [[model, candidate] + [
      f'{s["median_s_per_step"] * 1e3:.4g} ms, x{s["ratio_vs_constant"]:.3f}'
      ' [{:.3f}, {:.3f}]'.format(*s['ratio_ci95']) for s in (c, c['cpu'])]
          + [c['transfer_free'] is True]
          for model, entry in models.items()
          for candidate, c in entry['candidates'].items()]
  common.print_table(
      ['model', 'candidate', 'wall clock', 'CPU time', 'transfer-free'], rows,
      'Time per step and ratio to a constant rate [95% CI]; transfer-free: '
      "the timed loop ran under jax.transfer_guard('disallow').")
  print(f'\nOne PLRS evaluation costs {extra_us:.3g} us more than a constant '
        'one in a compiled loop: predicted ratio ' + ', '.join(
            f'{m} {e["predicted_ratio_from_schedule_cost"]:.4f}'
            for m, e in models.items()) + '.')
  common.finish('overhead', {
      'goal_ratio': GOAL_RATIO, 'constant_lr': CONSTANT_LR,
      'plrs_bounds': list(BOUNDS), 'models': models, 'schedule': schedule},
                plot(models), args)


if __name__ == '__main__':
  common.start(main)
