"""Steps/s of the pmap'd ResNet-20 PLRS train step on 1, 2, 4 and 8 devices.

Measured: the CIFAR ResNet-20 SGD step with a PLRS schedule
(`optax.sgd(plrs_jax.plrs_schedule(key, 0.07, 0.1))`) under `jax.pmap`, with
cross-replica BatchNorm (`workloads.cifar_model(axis_name='batch')`) and
pmean'd gradients (`workloads.sgd_step(axis_name='batch')`), at a FIXED batch
per device (16; `--quick`: 2, on 1 and 2 devices only), so the global batch grows
with the device count.
Every replica computes the same rate from (key, step) without communicating.

How: simulated CPU devices must be configured before JAX starts, so the program
launches one child process per device count (`--child --devices N`), which sets
`jax_num_cpu_devices` first, builds the replicated state and a sharded batch
on the devices, compiles the donating step, warms it up and times rounds of
steps with `common.time_interleaved`; it prints one JSON line that this
process collects. Reported: median seconds per step (wall clock, and the
process's CPU time), steps/s, images/s, and the step time and images/s
relative to 1 device. Interleaved with it, the child also times the same
pmap'd step without any collective (BatchNorm statistics per replica, no
gradient pmean): the difference is what the cross-device communication costs.

On a CPU the simulated devices share the machine's cores (2 here): N devices do
N times the work on the same cores, so this is not a speed-up. The ideal is a
step time N times the 1-device one and flat images/s; images/s relative to 1
device close to 1 shows that the per-replica overhead (pmap dispatch,
cross-replica BatchNorm, gradient pmean) is small. If the machine has GPUs
(`jax.devices('gpu')`), the real devices are measured as well (1, 2, 4, 8 up to
the number present), at a per-device batch of 128.

Run from the repository root (full runs take the shared benchmark lock):

    flock /tmp/plrs_bench.lock python -m benchmarks.scaling
    python -m benchmarks.scaling --quick --out /tmp/scaling   # smoke run

Writes OUT/scaling.json and OUT/scaling.png, and prints a Markdown table.
"""

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from benchmarks import common

DEVICE_COUNTS = (1, 2, 4, 8)
AXIS_NAME = 'batch'
MIN_VALUE, MAX_VALUE = 0.07, 0.1
RESULT_PREFIX = 'SCALING_RESULT '
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def _add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--per-device-batch', type=int, default=None,
                      help='images per device per step (default: 16 on CPU, '
                      '128 on GPU, 2 with --quick)')
  parser.add_argument('--rounds', type=int, default=None,
                      help='timed rounds per device count (default 10; '
                      '--quick: 2)')
  parser.add_argument('--round-seconds', type=float, default=1.0,
                      help='target length of a round; its steps are '
                      'calibrated from one warm step')
  # Internal: one measurement, in a process whose devices are set at start.
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--devices', type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument('--platform', default='cpu', choices=('cpu', 'gpu'),
                      help=argparse.SUPPRESS)


def _per_device_batch(args: argparse.Namespace, platform: str) -> int:
  if args.per_device_batch is not None:
    return args.per_device_batch
  if args.quick:
    return 2
  return 128 if platform == 'gpu' else 16


def measure(num_devices: int, platform: str, per_device_batch: int,
            rounds: int, round_seconds: float, quick: bool) -> dict[str, Any]:
  """Times the pmap'd step on `num_devices` devices of `platform`.

  Must run in a fresh process: for the CPU it first splits the host into
  `num_devices` simulated devices, which JAX allows only before it starts.

  Two variants are timed, interleaved: `cross_replica` (the benchmark: BatchNorm
  statistics and gradients averaged across devices) and `independent` (the
  same pmap'd step with no collective at all: each replica trains alone), so
  that the cost of the cross-device communication can be told apart from that
  of replication itself.

  Args:
    num_devices: devices to replicate over.
    platform: 'cpu' (simulated devices) or 'gpu' (real ones).
    per_device_batch: images per device per step.
    rounds: timed rounds.
    round_seconds: target length of a round (ignored with `quick`: 1 step).
    quick: one step per round.

  Returns:
    The measurement of `cross_replica` (devices, batch sizes, median wall and
    CPU seconds per step, steps/s, images/s, compile time, every round's time)
    with `independent`'s under the key 'independent'.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if platform == 'cpu':
    jax.config.update('jax_num_cpu_devices', num_devices)
  # Imported after the device count is set (they import JAX and Flax).
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import plrs_jax  # pylint: disable=g-import-not-at-top
  from benchmarks import workloads  # pylint: disable=g-import-not-at-top
  from train import models  # pylint: disable=g-import-not-at-top

  devices = jax.devices(platform)
  if len(devices) < num_devices:
    raise RuntimeError(f'asked for {num_devices} {platform} devices, '
                       f'found {len(devices)}')
  devices = devices[:num_devices]
  global_batch = num_devices * per_device_batch
  workload = workloads.cifar_model('resnet20', batch_size=global_batch,
                                   axis_name=AXIS_NAME)
  # The same network and parameters with BatchNorm statistics per replica.
  alone = workload._replace(loss_fn=workloads.cifar_loss_fn(
      models.create_model('resnet20', num_classes=10)))
  tx = optax.sgd(plrs_jax.plrs_schedule(jax.random.key(0), MIN_VALUE,
                                        MAX_VALUE))
  # Lay the state (replicated) and the batch (split) out on the devices once,
  # as outputs of one pmap, so the timed steps move no data between devices.
  lay_out = jax.pmap(lambda batch, state: (batch, state), in_axes=(0, None),
                     devices=devices)
  split_batch = jax.tree.map(
      lambda x: x.reshape(num_devices, per_device_batch, *x.shape[1:]),
      workload.batch)

  class Loop:
    """A donating pmap'd step with its own copy of the state."""

    def __init__(self, step):
      self.step = step
      self.batch, state = lay_out(split_batch, (
          workload.params, workload.model_state, tx.init(workload.params)))
      self.state = list(state)
      self.cpu_seconds = []

    def __call__(self):
      start = time.process_time()
      params, model_state, opt_state, loss = self.step(*self.state,
                                                       self.batch)
      self.state = [params, model_state, opt_state]
      jax.block_until_ready(loss)
      self.cpu_seconds.append(time.process_time() - start)
      return loss

  loops = {
      'cross_replica': Loop(jax.pmap(
          workloads.sgd_step(workload, tx, axis_name=AXIS_NAME),
          axis_name=AXIS_NAME, devices=devices, donate_argnums=(0, 1, 2))),
      'independent': Loop(jax.pmap(
          workloads.sgd_step(alone, tx), axis_name=AXIS_NAME, devices=devices,
          donate_argnums=(0, 1, 2))),
  }
  compile_seconds = {}
  for name, loop in loops.items():
    start = time.perf_counter()
    jax.block_until_ready(loop())
    compile_seconds[name] = time.perf_counter() - start
  # Calibrate the round length on a few warm steps.
  loop = loops['cross_replica']
  jax.block_until_ready(loop())
  start = time.perf_counter()
  for _ in range(3):
    loop()
  warm_step = (time.perf_counter() - start) / 3
  steps = 1 if quick else max(1, math.ceil(round_seconds / warm_step))
  for loop in loops.values():
    loop.cpu_seconds = []
  times = common.time_interleaved(loops, rounds=rounds, calls_per_round=steps)

  def summary(name):
    wall = times[name]
    cpu = np.asarray(loops[name].cpu_seconds[1:]).reshape(rounds, steps)
    median = float(np.median(wall))
    return {
        'compile_s': compile_seconds[name],
        'median_s_per_step': median,
        'median_cpu_s_per_step': float(np.median(cpu.mean(axis=1))),
        'steps_per_s': 1 / median,
        'images_per_s': global_batch / median,
        'round_s_per_step': [float(t) for t in wall],
        'round_cpu_s_per_step': [float(t) for t in cpu.mean(axis=1)],
    }

  return {
      'platform': platform,
      'devices': num_devices,
      'device_kinds': sorted({d.device_kind for d in devices}),
      'per_device_batch': per_device_batch,
      'global_batch': global_batch,
      'rounds': rounds,
      'steps_per_round': steps,
      **summary('cross_replica'),
      'independent': summary('independent'),
  }


def _child_env(platform: str, num_devices: int) -> dict[str, str]:
  env = dict(os.environ)
  if platform == 'cpu':
    env['JAX_PLATFORMS'] = 'cpu'
    env['JAX_NUM_CPU_DEVICES'] = str(num_devices)
    # A forced host device count would clash with jax_num_cpu_devices.
    flags = [f for f in env.get('XLA_FLAGS', '').split()
             if not f.startswith('--xla_force_host_platform_device_count')]
    env['XLA_FLAGS'] = ' '.join(flags)
  return env


def _child_command(num_devices: int, platform: str,
                   args: argparse.Namespace) -> list[str]:
  command = [sys.executable, '-m', 'benchmarks.scaling', '--child',
             '--devices', str(num_devices), '--platform', platform,
             '--per-device-batch', str(_per_device_batch(args, platform)),
             '--round-seconds', str(args.round_seconds)]
  if args.rounds is not None:
    command += ['--rounds', str(args.rounds)]
  if args.quick:
    command.append('--quick')
  return command


def run_children(counts: list[int], platform: str,
                 args: argparse.Namespace) -> list[dict[str, Any]]:
  """Measures each device count in a fresh process; returns their results.

  The children run one after the other, so that they do not share the
  machine, except with `--quick`, where only running matters.

  Args:
    counts: the device counts.
    platform: 'cpu' or 'gpu'.
    args: this program's arguments.

  Returns:
    The children's results, in the order of `counts`.
  """

  def start(num_devices):
    print(f'{platform}: {num_devices} device(s) ...', flush=True)
    return subprocess.Popen(
        _child_command(num_devices, platform, args), cwd=REPO_ROOT,
        env=_child_env(platform, num_devices), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)

  def finish(num_devices, child):
    stdout, stderr = child.communicate()
    for line in stdout.splitlines():
      if line.startswith(RESULT_PREFIX):
        return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(
        f'{platform} child with {num_devices} devices failed '
        f'(exit {child.returncode}):\n{stderr[-4000:]}')

  if args.quick:
    children = [start(n) for n in counts]
    return [finish(n, child) for n, child in zip(counts, children)]
  return [finish(n, start(n)) for n in counts]


def _gpu_count() -> int:
  """Number of GPUs JAX sees here (0 on a CPU-only machine)."""
  # This process only looks; the children need the GPU memory.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  import jax  # pylint: disable=g-import-not-at-top
  try:
    return len(jax.devices('gpu'))
  except RuntimeError:
    return 0


def with_relative(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Adds step time and images/s relative to the 1-device entry."""
  base = next(e for e in series if e['devices'] == 1)
  for entry in series:
    entry['step_time_vs_1_device'] = (entry['median_s_per_step'] /
                                      base['median_s_per_step'])
    entry['images_per_s_vs_1_device'] = (entry['images_per_s'] /
                                         base['images_per_s'])
  return series


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
  """Steps/s and images/s against the device count, one line per platform."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
  labels = {'cpu': f'simulated CPU devices ({os.cpu_count()} cores shared)',
            'gpu': 'GPUs'}
  for i, (platform, series) in enumerate(results['series'].items()):
    counts = [e['devices'] for e in series]
    for ax, key in zip(axes, ('steps_per_s', 'images_per_s')):
      alone = [e['independent'][key] for e in series]
      ax.plot(counts, alone, 'o--', color=f'C{i}', alpha=0.5,
              label=f'{labels[platform]}, no collectives')
      values = [e[key] for e in series]
      ax.plot(counts, values, 'o-', color=f'C{i}', label=labels[platform])
      if key == 'images_per_s':
        for n, v, e in zip(counts, values, series):
          ax.annotate(f'x{e["images_per_s_vs_1_device"]:.2f}', (n, v),
                      xytext=(0, 6), textcoords='offset points', ha='center',
                      fontsize=8)
  for ax, ylabel in zip(axes, ('steps/s',
                               'images/s (annotated: relative to 1 device)')):
    ax.set_xscale('log', base=2)
    ax.set_xticks(DEVICE_COUNTS, [str(n) for n in DEVICE_COUNTS])
    ax.set_xlabel('devices (fixed batch per device)')
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(
      "ResNet-20 PLRS train step under pmap (cross-replica BatchNorm, pmean'd "
      'grads)\nsimulated CPU devices share the cores: a per-replica overhead '
      'check, not a speed-up (ideal: flat images/s)', fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main() -> None:
  args = common.parse_args(__doc__.splitlines()[0], _add_arguments)
  rounds = args.rounds if args.rounds is not None else (2 if args.quick else 10)
  if args.child:
    result = measure(args.devices, args.platform,
                     _per_device_batch(args, args.platform), rounds,
                     args.round_seconds, args.quick)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return

  # A smoke run checks the plumbing with one and two devices.
  counts = list(DEVICE_COUNTS[:2] if args.quick else DEVICE_COUNTS)
  series = {'cpu': with_relative(run_children(counts, 'cpu', args))}
  gpus = _gpu_count()
  if gpus:
    series['gpu'] = with_relative(
        run_children([n for n in counts if n <= gpus], 'gpu', args))
  results = {'model': 'resnet20', 'schedule': 'plrs',
             'plrs_bounds': [MIN_VALUE, MAX_VALUE],
             'device_counts': counts, 'series': series}

  for platform, entries in series.items():
    print()
    if platform == 'cpu':
      print(f'Simulated CPU devices sharing {os.cpu_count()} cores, '
            f'{entries[0]["per_device_batch"]} images per device: N devices '
            'do N times the work on the same cores, so this is not a '
            'speed-up but a check that the per-replica overhead is small: '
            'ideally step time xN and images/s x1.00 vs 1 device (above 1 '
            'where one device alone does not keep all cores busy).')
    else:
      print(f'Real GPUs, {entries[0]["per_device_batch"]} images per device.')
    print()
    print(common.markdown_table(
        ['devices', 'global batch', 'median ms/step', 'steps/s', 'images/s',
         'step time vs 1 device', 'images/s vs 1 device', 'CPU ms/step',
         'ms/step without collectives'],
        [[e['devices'], e['global_batch'], e['median_s_per_step'] * 1e3,
          e['steps_per_s'], e['images_per_s'], e['step_time_vs_1_device'],
          e['images_per_s_vs_1_device'], e['median_cpu_s_per_step'] * 1e3,
          e['independent']['median_s_per_step'] * 1e3] for e in entries]))
    print()
    print("ms/step without collectives: the same pmap'd step with BatchNorm "
          'statistics per replica and no gradient pmean (replicas train '
          'alone), timed interleaved with it: the difference is the cost of '
          'the cross-device communication.')
  path = common.write_results('scaling', results, args.out, quick=args.quick)
  plot(results, args.out / 'scaling.png')
  print(f'\nwrote {path} and {args.out / "scaling.png"}')


if __name__ == '__main__':
  main()
