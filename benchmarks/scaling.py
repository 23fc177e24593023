"""The pmap'd ResNet-20 train step on 1, 2, 4 and 8 simulated CPU devices.

The step every program runs (`engine.train_step`, through
benchmarks/workloads.py), SGD at a PLRS rate in [0.07, 0.1], under `jax.pmap`
with `axis_name='batch'`: cross-replica BatchNorm and pmean'd gradients, at a
fixed batch of 16 per device, so the global batch grows with the devices.
Every replica computes the same rate from (key, step) without communicating.
Interleaved with it, as in benchmarks/overhead.py, runs the same pmap'd step
without the axis (BatchNorm statistics per replica, no pmean: the replicas
train alone); the ratio of the two is what the collectives cost.

Simulated devices must be set before JAX starts, so each device count runs in
a child process (`--devices N`) that prints its result as one JSON line. The
devices share the machine's cores: N devices do N times the work on the same
cores, so this checks the per-replica overhead (ideal: flat images/s), not a
speed-up.

    flock /tmp/plrs_bench.lock python -m benchmarks.scaling
    python -m benchmarks.scaling --quick   # 1 and 2 devices, into a temp dir

Writes scaling.json and scaling.png, and prints a Markdown table.
"""

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import jax
import matplotlib
import optax

from benchmarks import common
from benchmarks import overhead
from benchmarks import workloads

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

DEVICE_COUNTS = (1, 2, 4, 8)
PER_DEVICE_BATCH = 16
AXIS_NAME = 'batch'
RESULT_PREFIX = 'SCALING_RESULT '


def measure(devices: int, quick: bool) -> dict[str, Any]:
  """Times the step with and without the axis on `devices` CPU devices.

  Runs in a fresh process: JAX splits the host into devices only at start.
  """
  jax.config.update('jax_num_cpu_devices', devices)
  per_device = 2 if quick else PER_DEVICE_BATCH
  rate = overhead.plrs_rate()
  # Lays the batch (split) and the state (replicated) out on the devices
  # once, so the timed steps move no data between devices.
  lay_out = jax.pmap(lambda batch, state: (batch, state), in_axes=(0, None))
  loops = {}
  for name, axis_name in (('cross_replica', AXIS_NAME), ('independent', None)):
    w = workloads.workload('resnet20', devices * per_device,
                           axis_name=axis_name)
    batch, state = lay_out(
        jax.tree.map(lambda x: x.reshape(devices, per_device, *x.shape[1:]),
                     w.batch), workloads.train_state(w, optax.sgd(rate)))
    loops[name] = overhead.StepLoop(
        jax.pmap(workloads.step(w, rate, axis_name), axis_name=AXIS_NAME,
                 donate_argnums=0), state, batch)
  return {'platform': 'cpu', 'devices': devices,
          'per_device_batch': per_device, 'global_batch': devices * per_device,
          **overhead.measure(loops, 'independent', rounds=2 if quick else 10,
                             round_seconds=0.0 if quick else 1.0)}


def run_children(counts: list[int], quick: bool) -> list[dict[str, Any]]:
  """Measures each device count in a child process, one after the other.

  With `--quick`, where only running matters, the children run at once.
  """
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  # A forced host device count would clash with jax_num_cpu_devices.
  env['XLA_FLAGS'] = ' '.join(
      f for f in env.get('XLA_FLAGS', '').split()
      if not f.startswith('--xla_force_host_platform_device_count'))

  def start(devices):
    print(f'{devices} device(s) ...', flush=True)
    return subprocess.Popen(
        [sys.executable, '-m', 'benchmarks.scaling', '--devices',
         str(devices)] + ['--quick'] * quick, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)

  def finish(devices, child):
    stdout, stderr = child.communicate()
    for line in stdout.splitlines():
      if line.startswith(RESULT_PREFIX):
        return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f'the child with {devices} devices failed (exit '
                       f'{child.returncode}):\n{stderr[-4000:]}')

  if quick:
    children = [start(n) for n in counts]
    return [finish(n, child) for n, child in zip(counts, children)]
  return [finish(n, start(n)) for n in counts]


def plot(series: list[dict[str, Any]], path) -> None:
  """Images/s against the device count, with and without collectives."""
  fig, ax = plt.subplots(figsize=(6, 4.2))
  counts = [e['devices'] for e in series]
  for name, style, label in (
      ('cross_replica', 'o-', "cross-replica BatchNorm, pmean'd gradients"),
      ('independent', 'o--', 'no collectives: the replicas train alone')):
    ax.plot(counts, [e['global_batch'] / e['candidates'][name][
        'median_s_per_step'] for e in series], style, label=label)
  ax.set_xscale('log', base=2)
  ax.set_xticks(counts, [str(n) for n in counts])
  ax.set_xlabel(f'simulated CPU devices ({os.cpu_count()} cores shared)')
  ax.set_ylabel('images/s')
  ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
  ax.legend()
  ax.set_title('ResNet-20 PLRS step under pmap, '
               f'{series[0]["per_device_batch"]} images per device')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main() -> None:
  args = common.parse_args(__doc__.splitlines()[0], lambda parser: (
      parser.add_argument('--devices', type=int, help=argparse.SUPPRESS)))
  if args.devices:  # a child
    print(RESULT_PREFIX + json.dumps(measure(args.devices, args.quick),
                                     default=float), flush=True)
    return
  counts = list(DEVICE_COUNTS[:2] if args.quick else DEVICE_COUNTS)
  series = run_children(counts, args.quick)
  base = series[0]['candidates']['cross_replica']['median_s_per_step']
  for entry in series:
    step = entry['candidates']['cross_replica']['median_s_per_step']
    entry.update(images_per_s=entry['global_batch'] / step,
                 step_time_vs_1_device=step / base)
  rows = [[e['devices'], e['global_batch'], e['images_per_s'],
           e['step_time_vs_1_device'],
           e['candidates']['independent']['median_s_per_step'] * 1e3,
           e['candidates']['cross_replica']['median_s_per_step'] * 1e3,
           '{:.3f} [{:.3f}, {:.3f}]'.format(
               e['candidates']['cross_replica']['ratio_vs_independent'],
               *e['candidates']['cross_replica']['ratio_ci95']),
           all(c['transfer_free'] is True for c in e['candidates'].values())]
          for e in series]
  print(f'\n{series[0]["per_device_batch"]} images per simulated device, '
        f'{os.cpu_count()} cores shared; the collectives\' cost: the step '
        'with the axis over the step without it [95% CI].\n')
  print(common.markdown_table(
      ['devices', 'global batch', 'images/s', 'step time vs 1 device',
       'ms/step without collectives', 'ms/step', 'with / without [95% CI]',
       'transfer-free'], rows))
  path = common.write_results(
      'scaling', {'model': 'resnet20', 'schedule': 'plrs',
                  'plrs_bounds': list(overhead.BOUNDS),
                  'device_counts': counts, 'series': {'cpu': series}},
      args.out, quick=args.quick)
  plot(series, args.out / 'scaling.png')
  print(f'\nwrote {path} and {args.out / "scaling.png"}')


if __name__ == '__main__':
  main()
