"""What PLRS costs inside a jitted SGD step, and whether it stays on device.

Measured, for the MLP (784-256-256-10) and CIFAR ResNet-20 at batch 128 on
random data, three optimizers that differ only in how the learning rate is
given:

  constant            `optax.sgd(0.085)`: a Python float, folded into the step
  plrs                `optax.sgd(plrs_jax.plrs_schedule(key, 0.07, 0.1))`
  inject_hyperparams  `optax.inject_hyperparams(optax.sgd)(learning_rate=...)`
                      with the same PLRS schedule (the rate lives in the state)

Each is one jitted step `(params, model_state, opt_state, batch) -> ...` that
donates its state. After compilation and warm-up, with the batch already on the
device, the three are timed with `common.time_interleaved`: rounds of several
steps, the candidates' order alternating between rounds; the result is the
median time per step and its ratio to `constant` (the project's goal: ratio <=
1.01), with a 95% bootstrap interval over the paired rounds. Every step is
waited for before the next is dispatched, so the host-side cost of a step
(flattening a larger optimizer state, for instance) is not hidden behind the
previous step's compute: the ratio is an upper bound on what a training loop
sees.

Two clocks: wall time (what a user waits for) and the process's CPU time
(`time.process_time`, all threads). The machines are shared: other people's
jobs make wall time swing by tens of percent from round to round, while CPU
time counts only the work done by this process and is much steadier, so the
1% question is better answered by the CPU-time ratio and by the cost of the
schedule measured alone (below) divided by the step time.

The timed steady-state loop runs under `jax.transfer_guard('disallow')`: any
implicit host<->device transfer in it (a rate computed on the host, a step
counter fetched to Python) raises, and `transfer_free` records that none did.

Separately, the schedule alone: `jax.jit(schedule)(count)` against a jitted
constant schedule (microseconds per call, dispatch included), and the marginal
cost of one evaluation inside a compiled loop (`lax.fori_loop` over the steps
summing the rates, against the same loop summing a constant).

Run from the repository root (full runs take the shared benchmark lock):

    flock /tmp/plrs_bench.lock python -m benchmarks.overhead
    python -m benchmarks.overhead --quick --out /tmp/overhead   # smoke run

Writes OUT/overhead.json (medians, ratios, every round's per-step time) and
OUT/overhead.png, and prints a Markdown table.
"""

from collections.abc import Callable
import dataclasses
import math
import pathlib
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

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

CANDIDATES = ('constant', 'plrs', 'inject_hyperparams')
CONSTANT_LR = 0.085  # the midpoint of PLRS's [0.07, 0.1]
MIN_VALUE, MAX_VALUE = 0.07, 0.1
GOAL_RATIO = 1.01


@dataclasses.dataclass(frozen=True)
class Sizes:
  """How much to time for one model.

  Attributes:
    batch_size: images per step.
    rounds: timed rounds per candidate.
    round_seconds: the target length of a round; the steps per round are
      calibrated from one warm step of `constant`.
    min_steps_per_round: at least this many steps per round.
    max_steps_per_round: at most this many steps per round.
  """
  batch_size: int
  rounds: int
  round_seconds: float
  min_steps_per_round: int
  max_steps_per_round: int


FULL = {
    'mlp': Sizes(batch_size=128, rounds=40, round_seconds=0.25,
                 min_steps_per_round=10, max_steps_per_round=1000),
    'resnet20': Sizes(batch_size=128, rounds=10, round_seconds=2.0,
                      min_steps_per_round=2, max_steps_per_round=100),
}
QUICK = {
    'mlp': Sizes(batch_size=8, rounds=2, round_seconds=0.0,
                 min_steps_per_round=2, max_steps_per_round=2),
    'resnet20': Sizes(batch_size=8, rounds=2, round_seconds=0.0,
                      min_steps_per_round=2, max_steps_per_round=2),
}


def optimizers(key: jax.Array) -> dict[str, optax.GradientTransformation]:
  """The three ways of giving SGD its learning rate, by candidate name."""
  schedule = plrs_jax.plrs_schedule(key, MIN_VALUE, MAX_VALUE)
  return {
      'constant': optax.sgd(CONSTANT_LR),
      'plrs': optax.sgd(schedule),
      'inject_hyperparams': optax.inject_hyperparams(optax.sgd)(
          learning_rate=schedule),
  }


class TrainLoop:
  """A jitted, state-donating SGD step and the state it advances.

  Calling it runs one step on the stored batch, waits for it, records the CPU
  time the process spent on it, and returns the loss. The state is owned here
  because donation invalidates the old one.

  Attributes:
    compile_seconds: wall time of the first (compiling) call.
    cpu_seconds: process CPU seconds of each call since `reset_cpu()`.
  """

  def __init__(self, workload: workloads.Workload,
               tx: optax.GradientTransformation):
    self._step = jax.jit(workloads.sgd_step(workload, tx),
                         donate_argnums=(0, 1, 2))
    # Private copies: donation must not delete the workload's shared arrays.
    params = jax.tree.map(jnp.copy, workload.params)
    model_state = jax.tree.map(jnp.copy, workload.model_state)
    self._state = (params, model_state, jax.jit(tx.init)(params))
    self._batch = jax.device_put(workload.batch)
    self.compile_seconds = 0.0
    self.cpu_seconds = []

  def compile(self) -> None:
    """Compiles the step and runs it once (the first call is not timed)."""
    start = time.perf_counter()
    jax.block_until_ready(self())
    self.compile_seconds = time.perf_counter() - start

  def reset_cpu(self) -> None:
    """Forgets the recorded CPU times."""
    self.cpu_seconds = []

  def __call__(self) -> jax.Array:
    start = time.process_time()
    params, model_state, opt_state, loss = self._step(*self._state,
                                                      self._batch)
    self._state = (params, model_state, opt_state)
    # The step's outputs are ready together: waiting for the loss waits for
    # the step (and is not a transfer: the loss stays on the device).
    jax.block_until_ready(loss)
    self.cpu_seconds.append(time.process_time() - start)
    return loss

  def cpu_per_round(self, rounds: int, calls_per_round: int) -> np.ndarray:
    """CPU seconds per step of each timed round of `common.time_interleaved`.

    Args:
      rounds: the timed rounds.
      calls_per_round: the calls per round.

    Returns:
      `rounds` per-step CPU times (the untimed warm-up call is dropped).
    """
    timed = np.asarray(self.cpu_seconds[-rounds * calls_per_round:])
    return timed.reshape(rounds, calls_per_round).mean(axis=1)


def _steps_per_round(loop: Callable[[], Any], sizes: Sizes) -> int:
  """Steps per round so that a round lasts about `sizes.round_seconds`."""
  start = time.perf_counter()
  jax.block_until_ready(loop())
  seconds = time.perf_counter() - start
  steps = math.ceil(sizes.round_seconds / max(seconds, 1e-9))
  return int(np.clip(steps, sizes.min_steps_per_round,
                     sizes.max_steps_per_round))


def time_without_transfers(
    candidates: dict[str, Callable[[], Any]], *, rounds: int,
    calls_per_round: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Times the candidates interleaved, under `transfer_guard('disallow')`.

  Args:
    candidates: name -> a compiled, warmed-up function with its inputs on the
      device, as for `common.time_interleaved`.
    rounds: timed rounds.
    calls_per_round: calls per round.

  Returns:
    (name -> per-call seconds of each round, name -> True if the guarded loop
    ran, else the guard's error message). If the guard raised, the timing is
    redone without it so that the numbers still exist.
  """
  try:
    with jax.transfer_guard('disallow'):
      times = common.time_interleaved(candidates, rounds=rounds,
                                      calls_per_round=calls_per_round)
    return times, {name: True for name in candidates}
  except Exception:  # pylint: disable=broad-except
    # Find out which candidate transfers, then time them all unguarded.
    transfer_free = {}
    for name, fn in candidates.items():
      try:
        with jax.transfer_guard('disallow'):
          jax.block_until_ready(fn())
        transfer_free[name] = True
      except Exception as error:  # pylint: disable=broad-except
        transfer_free[name] = f'{type(error).__name__}: {error}'
    times = common.time_interleaved(candidates, rounds=rounds,
                                    calls_per_round=calls_per_round)
    return times, transfer_free


def bootstrap_ratio(times: np.ndarray, baseline: np.ndarray,
                    resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
  """95% interval of median(times) / median(baseline) over paired rounds.

  Rounds are resampled in pairs (round r of both), since the interleaving
  makes a round's two timings share the machine's state.

  Args:
    times: per-round times of a candidate.
    baseline: per-round times of the baseline, same rounds.
    resamples: bootstrap resamples.
    seed: seed of the resampling (numpy: statistics, not training).

  Returns:
    (low, high), the 2.5% and 97.5% quantiles of the ratio.
  """
  rng = np.random.default_rng(seed)
  index = rng.integers(0, len(times), size=(resamples, len(times)))
  ratios = np.median(times[index], axis=1) / np.median(baseline[index], axis=1)
  low, high = np.quantile(ratios, [0.025, 0.975])
  return float(low), float(high)


def _summary(times: np.ndarray, baseline: np.ndarray) -> dict[str, Any]:
  low, high = bootstrap_ratio(times, baseline)
  return {
      'median_s_per_step': float(np.median(times)),
      'ratio_vs_constant': float(np.median(times) / np.median(baseline)),
      'ratio_ci95': [low, high],
      'round_s_per_step': times.tolist(),
  }


def measure_model(name: str, workload: workloads.Workload,
                  sizes: Sizes) -> dict[str, Any]:
  """Times the three candidates on one workload.

  Args:
    name: the model's name in the results.
    workload: the model, parameters and batch.
    sizes: rounds and round length.

  Returns:
    The model's entry of the results: per candidate, for wall time and for
    CPU time, the median seconds per step, the ratio to `constant` and its
    interval, and every round's per-step time; `transfer_free` and the compile
    time.
  """
  loops = {candidate: TrainLoop(workload, tx) for candidate, tx in
           optimizers(jax.random.key(0)).items()}
  for loop in loops.values():
    loop.compile()
  steps = _steps_per_round(loops['constant'], sizes)
  print(f'{name}: batch {sizes.batch_size}, {sizes.rounds} rounds of {steps} '
        'steps per candidate', flush=True)
  for loop in loops.values():
    loop.reset_cpu()
  wall, transfer_free = time_without_transfers(
      loops, rounds=sizes.rounds, calls_per_round=steps)
  cpu = {candidate: loop.cpu_per_round(sizes.rounds, steps)
         for candidate, loop in loops.items()}
  candidates = {}
  for candidate in CANDIDATES:
    candidates[candidate] = {
        **_summary(wall[candidate], wall['constant']),
        'cpu': _summary(cpu[candidate], cpu['constant']),
        'transfer_free': transfer_free[candidate],
        'compile_s': loops[candidate].compile_seconds,
    }
  return {
      'batch_size': sizes.batch_size,
      'rounds': sizes.rounds,
      'steps_per_round': steps,
      'candidates': candidates,
  }


def measure_schedule(quick: bool) -> dict[str, Any]:
  """The schedule alone: per jitted call, and per evaluation inside a loop.

  Args:
    quick: tiny sizes.

  Returns:
    Microseconds per `jax.jit(schedule)(count)` call for PLRS and a constant
    schedule (dispatch included), and microseconds per evaluation inside a
    compiled `fori_loop` (the marginal cost within a step), with raw rounds.
  """
  schedules = {
      'constant': optax.constant_schedule(CONSTANT_LR),
      'plrs': plrs_jax.plrs_schedule(jax.random.key(0), MIN_VALUE, MAX_VALUE),
  }
  rounds = 3 if quick else 30
  calls = 10 if quick else 2000
  loop_steps = 100 if quick else 200_000
  count = jax.device_put(jnp.asarray(12345, jnp.int32))
  per_call = {}
  for name, schedule in schedules.items():
    jitted = jax.jit(schedule)
    per_call[name] = lambda jitted=jitted: jitted(count)

  def summed(schedule):
    def body(step, total):
      return total + schedule(step)
    # A traced trip count keeps the loop a loop: XLA cannot unroll or fold it.
    return jax.jit(lambda n: jax.lax.fori_loop(0, n, body, jnp.float32(0)))

  n = jax.device_put(jnp.asarray(loop_steps, jnp.int32))
  in_loop = {}
  for name, schedule in schedules.items():
    jitted = summed(schedule)
    in_loop[name] = lambda jitted=jitted: jitted(n)

  call_times, call_free = time_without_transfers(
      per_call, rounds=rounds, calls_per_round=calls)
  loop_times, loop_free = time_without_transfers(
      in_loop, rounds=rounds, calls_per_round=1)
  loop_times = {name: t / loop_steps for name, t in loop_times.items()}
  results = {'calls_per_round': calls, 'loop_steps': loop_steps,
             'rounds': rounds}
  for name in schedules:
    results[name] = {
        'us_per_call': float(np.median(call_times[name]) * 1e6),
        'us_per_evaluation_in_loop': float(np.median(loop_times[name]) * 1e6),
        'transfer_free': call_free[name] is True and loop_free[name] is True,
        'round_us_per_call': (call_times[name] * 1e6).tolist(),
        'round_us_per_evaluation_in_loop': (loop_times[name] * 1e6).tolist(),
    }
  results['plrs_extra_us_per_evaluation_in_loop'] = (
      results['plrs']['us_per_evaluation_in_loop'] -
      results['constant']['us_per_evaluation_in_loop'])
  return results


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
  """Per-step times per candidate for each model, and the schedule alone."""
  models = results['models']
  fig, axes = plt.subplots(1, len(models) + 1,
                           figsize=(4.6 * (len(models) + 1), 4.4))
  rng = np.random.default_rng(0)  # horizontal jitter of the strip plot
  positions = np.arange(1, len(CANDIDATES) + 1)
  for ax, (model, entry) in zip(axes, models.items()):
    stats = [entry['candidates'][c] for c in CANDIDATES]
    top = 0.0
    for offset, color, label, clock in ((-0.18, 'C0', 'wall', lambda s: s),
                                        (0.18, 'C1', 'CPU',
                                         lambda s: s['cpu'])):
      data = [np.asarray(clock(st)['round_s_per_step']) * 1e3 for st in stats]
      ax.boxplot(data, positions=positions + offset, widths=0.3,
                 showfliers=False, manage_ticks=False,
                 medianprops={'color': 'k'})
      for x, values in zip(positions + offset, data):
        ax.scatter(x + rng.uniform(-0.07, 0.07, len(values)), values, s=9,
                   alpha=0.6, color=color, zorder=3,
                   label=label if x == positions[0] + offset else None)
      top = max(top, max(v.max() for v in data))
    for x, st in zip(positions, stats):
      ax.annotate(f'wall x{st["ratio_vs_constant"]:.3f}\n'
                  f'CPU x{st["cpu"]["ratio_vs_constant"]:.3f}', (x, top),
                  xytext=(0, 6), textcoords='offset points', ha='center',
                  fontsize=8)
    ax.set_xticks(positions, ['constant', 'plrs', 'inject_\nhyperparams'])
    ax.set_ylabel('ms per step (each point: one round)')
    ax.set_title(f'{model}, batch {entry["batch_size"]}')
    ax.set_ylim(0, top * 1.25)
    ax.legend(fontsize=8, loc='lower right')
  schedule = results['schedule']
  ax = axes[-1]
  names = ['constant', 'plrs']
  x = np.arange(2)
  for offset, key, label in (
      (-0.2, 'us_per_call', 'jit(schedule)(count), per call'),
      (0.2, 'us_per_evaluation_in_loop', 'one evaluation in a compiled loop')):
    values = [schedule[n][key] for n in names]
    bars = ax.bar(x + offset, values, 0.4, label=label)
    ax.bar_label(bars, [f'{v:.3g}' for v in values], fontsize=8)
  ax.set_xticks(x, names)
  ax.set_yscale('log')
  ax.set_ylim(top=ax.get_ylim()[1] * 20)  # room for the legend
  ax.set_ylabel('microseconds (median)')
  ax.set_title('the schedule alone')
  ax.legend(fontsize=8, loc='upper left')
  fig.suptitle('PLRS inside a jitted, donating SGD step: time per step vs a '
               'constant rate, wall clock and process CPU time (ratios '
               f'annotated; goal <= {GOAL_RATIO}; shared machine)',
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main() -> None:
  args = common.parse_args(__doc__.splitlines()[0])
  sizes = QUICK if args.quick else FULL
  builders = {
      'mlp': lambda s: workloads.mlp(batch_size=s.batch_size),
      'resnet20': lambda s: workloads.cifar_model('resnet20',
                                                  batch_size=s.batch_size),
  }
  models = {}
  for name, build in builders.items():
    models[name] = measure_model(name, build(sizes[name]), sizes[name])
  schedule = measure_schedule(args.quick)
  # What the schedule alone predicts: its in-graph cost over the step's time.
  for entry in models.values():
    step_us = entry['candidates']['constant']['cpu']['median_s_per_step'] * 1e6
    entry['predicted_ratio_from_schedule_cost'] = 1 + max(
        schedule['plrs_extra_us_per_evaluation_in_loop'], 0) / step_us
  results = {
      'goal_ratio': GOAL_RATIO,
      'constant_lr': CONSTANT_LR,
      'plrs_bounds': [MIN_VALUE, MAX_VALUE],
      'models': models,
      'schedule': schedule,
  }
  rows = []
  for model, entry in models.items():
    for candidate in CANDIDATES:
      stats = entry['candidates'][candidate]
      cpu = stats['cpu']
      rows.append([
          model, candidate, stats['median_s_per_step'] * 1e3,
          stats['ratio_vs_constant'], '[{:.3f}, {:.3f}]'.format(
              *stats['ratio_ci95']),
          cpu['median_s_per_step'] * 1e3, cpu['ratio_vs_constant'],
          '[{:.3f}, {:.3f}]'.format(*cpu['ratio_ci95']),
          stats['transfer_free'] is True])
  print()
  print('Median time per jitted, donating SGD step and its ratio to a constant '
        f'rate (goal <= {GOAL_RATIO}), by wall clock and by process CPU time; '
        '95% bootstrap intervals over the interleaved rounds; transfer-free: '
        "the timed loop ran under jax.transfer_guard('disallow').")
  print()
  print(common.markdown_table(
      ['model', 'candidate', 'median ms/step', 'ratio', 'ratio 95% CI',
       'CPU ms/step', 'CPU ratio', 'CPU ratio 95% CI', 'transfer-free'], rows))
  print()
  print('Predicted ratio from the schedule alone (its extra in-graph cost '
        '{:.3g} us over the constant step\'s CPU time): {}.'.format(
            schedule['plrs_extra_us_per_evaluation_in_loop'], ', '.join(
                f'{model} {entry["predicted_ratio_from_schedule_cost"]:.6f}'
                for model, entry in models.items())))
  print()
  print('The schedule alone (median microseconds):')
  print()
  print(common.markdown_table(
      ['schedule', 'jit(schedule)(count), per call',
       'per evaluation in a compiled loop'],
      [[n, schedule[n]['us_per_call'], schedule[n]['us_per_evaluation_in_loop']]
       for n in ('constant', 'plrs')]))
  path = common.write_results('overhead', results, args.out, quick=args.quick)
  plot(results, args.out / 'overhead.png')
  print(f'\nwrote {path} and {args.out / "overhead.png"}')


if __name__ == '__main__':
  main()
