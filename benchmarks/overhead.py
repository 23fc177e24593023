"""What PLRS costs inside the training step, and whether it stays on device.

The MLP (784-256-256-10) and ResNet-20 of train/models.py at batch 128 on
random data, trained by `engine.train_step` (benchmarks/workloads.py) with SGD
given its rate three ways: `constant` (`optax.sgd(0.085)`, the midpoint of the
bounds), `plrs` (`optax.sgd(plrs_jax.plrs_schedule(key, 0.07, 0.1))`) and
`inject_hyperparams` (`optax.inject_hyperparams(optax.sgd)` at that schedule).

Each step is jitted, donates its state and is waited for before the next, so
host-side work is not hidden behind compute: the ratios bound what a training
loop sees. The candidates run in interleaved rounds (`common.time_interleaved`)
timed by the wall clock and by the process's CPU time, which other jobs on a
shared machine disturb much less; reported are the median time per step, its
ratio to `constant` (goal <= 1.01) and a 95% bootstrap interval over the paired
rounds. The timed loop runs under `jax.transfer_guard('disallow')`: a host
transfer per step would raise (`transfer_free`). Apart, the extra cost of one
PLRS evaluation over a constant one inside a compiled `lax.fori_loop`, divided
by the step's CPU time, predicts the ratio.

    flock /tmp/plrs_bench.lock python -m benchmarks.overhead
    python -m benchmarks.overhead --quick   # smoke run, into a temporary dir

Writes overhead.json and overhead.png, and prints a Markdown table.
"""

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import plrs_jax
from benchmarks import common
from benchmarks import workloads
from train import engine

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

CANDIDATES = ('constant', 'plrs', 'inject_hyperparams')
CONSTANT_LR = 0.085
BOUNDS = (0.07, 0.1)
GOAL_RATIO = 1.01
# model: (batch size, timed rounds, seconds per round).
FULL = {'mlp': (128, 40, 0.25), 'resnet20': (128, 10, 2.0)}
QUICK = {'mlp': (8, 2, 0.0), 'resnet20': (8, 2, 0.0)}


def plrs_rate() -> optax.Schedule:
  """The PLRS schedule of run 0."""
  return plrs_jax.plrs_schedule(engine.run_keys(0).schedule, *BOUNDS)


class StepLoop:
  """A compiled step that owns the state it donates.

  Each call runs one step, waits for it and appends the process CPU time it
  took to `cpu_seconds`. It returns the loss, which stays on the device.
  """

  def __init__(self, step, state, batch):
    self.step, self.state, self.batch = step, state, batch
    self.cpu_seconds = []

  def __call__(self) -> jax.Array:
    start = time.process_time()
    self.state, metrics = self.step(self.state, self.batch)
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
  """Median per-step time and its ratio to the baseline's, paired rounds.

  The 95% interval resamples rounds in pairs (round r of both), since the
  interleaving makes a round's two timings share the machine's state.
  """
  rng = np.random.default_rng(0)  # statistics, not training
  index = rng.integers(0, len(times), size=(2000, len(times)))
  ratios = np.median(times[index], 1) / np.median(baseline[index], 1)
  return {'median_s_per_step': float(np.median(times)),
          f'ratio_vs_{baseline_name}': float(
              np.median(times) / np.median(baseline)),
          'ratio_ci95': np.quantile(ratios, [0.025, 0.975]).tolist(),
          'round_s_per_step': times.tolist()}


def measure(loops: dict[str, StepLoop], baseline: str, rounds: int,
            round_seconds: float) -> dict[str, Any]:
  """Times the loops in interleaved rounds; compares each with `baseline`.

  Each loop compiles, then runs a step under the transfer guard; the timed
  rounds run under it too when every loop passed. A round lasts about
  `round_seconds` (at least one step, calibrated on the baseline).

  Returns:
    `rounds`, `steps_per_round` and, per loop, `compare`'s entry for the wall
    clock, the same for CPU time under 'cpu', and `transfer_free`.
  """
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
  # Per round, the mean of its steps; the first call was time_interleaved's
  # untimed warm-up.
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
  rated = {'constant': (optax.constant_schedule(CONSTANT_LR),
                        optax.sgd(CONSTANT_LR)),
           'plrs': (plrs, optax.sgd(plrs)),
           'inject_hyperparams': (plrs, optax.inject_hyperparams(optax.sgd)(
               learning_rate=plrs))}
  loops = {c: StepLoop(jax.jit(workloads.step(w, rate), donate_argnums=0),
                       workloads.train_state(w, tx), w.batch)
           for c, (rate, tx) in rated.items()}
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
  times = common.time_interleaved(loops, rounds=rounds)
  us = {name: t * 1e6 / loop_steps for name, t in times.items()}
  return {'loop_steps': loop_steps, 'rounds': rounds, **{
      name: {'us_per_evaluation_in_loop': float(np.median(t)),
             'round_us_per_evaluation_in_loop': t.tolist()}
      for name, t in us.items()},
          'plrs_extra_us_per_evaluation_in_loop': float(
              np.median(us['plrs']) - np.median(us['constant']))}


def plot(models: dict[str, Any], path) -> None:
  """CPU time per step of each round, per candidate and model."""
  fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.2))
  for ax, (model, entry) in zip(axes, models.items()):
    stats = [entry['candidates'][c] for c in CANDIDATES]
    ax.boxplot([np.multiply(s['cpu']['round_s_per_step'], 1e3) for s in stats],
               tick_labels=[f'{c}\nx{s["cpu"]["ratio_vs_constant"]:.3f}'
                            for c, s in zip(CANDIDATES, stats)])
    ax.set_ylabel('CPU ms per step, over the rounds')
    ax.set_title(f'{model}, batch {entry["batch_size"]}')
  fig.suptitle('PLRS in the jitted train step: CPU time per step against a '
               f'constant rate (ratio annotated; goal <= {GOAL_RATIO})')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main() -> None:
  args = common.parse_args(__doc__.splitlines()[0])
  models = {name: measure_model(name, *sizes)
            for name, sizes in (QUICK if args.quick else FULL).items()}
  schedule = schedule_cost(args.quick)
  for entry in models.values():
    step_us = entry['candidates']['constant']['cpu']['median_s_per_step'] * 1e6
    entry['predicted_ratio_from_schedule_cost'] = 1 + max(
        schedule['plrs_extra_us_per_evaluation_in_loop'], 0) / step_us
  rows = []
  for model, entry in models.items():
    for candidate, stats in entry['candidates'].items():
      rows.append([model, candidate] + [
          f'{s["median_s_per_step"] * 1e3:.4g} ms, x{s["ratio_vs_constant"]:.3f}'
          ' [{:.3f}, {:.3f}]'.format(*s['ratio_ci95'])
          for s in (stats, stats['cpu'])] + [stats['transfer_free'] is True])
  print('\nTime per step and ratio to a constant rate [95% CI]; transfer-free: '
        "the timed loop ran under jax.transfer_guard('disallow').\n")
  print(common.markdown_table(['model', 'candidate', 'wall clock', 'CPU time',
                               'transfer-free'], rows))
  print('\nOne PLRS evaluation costs {:.3g} us more than a constant one in a '
        'compiled loop: predicted ratio {}.'.format(
            schedule['plrs_extra_us_per_evaluation_in_loop'], ', '.join(
                f'{m} {e["predicted_ratio_from_schedule_cost"]:.4f}'
                for m, e in models.items())))
  path = common.write_results(
      'overhead', {'goal_ratio': GOAL_RATIO, 'constant_lr': CONSTANT_LR,
                   'plrs_bounds': list(BOUNDS), 'models': models,
                   'schedule': schedule}, args.out, quick=args.quick)
  plot(models, args.out / 'overhead.png')
  print(f'\nwrote {path} and {args.out / "overhead.png"}')


if __name__ == '__main__':
  main()
