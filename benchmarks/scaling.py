"""The pmap'd ResNet-20 train step on 1, 2, 4 and 8 simulated CPU devices.

`engine.train_step` with SGD at PLRS, 16 images per device, with
`axis_name` (cross-replica BatchNorm, pmean'd gradients) interleaved with
the same step without it: images/s and what the collectives cost. Each
device count runs in a child process (`--devices N`, one JSON line); the
devices share the cores, so ideal is flat images/s, not a speed-up.

    flock /tmp/plrs_bench.lock python -m benchmarks.scaling [--quick]
"""

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import jax
import optax

from benchmarks import common
from benchmarks import overhead
from benchmarks import workloads
from benchmarks.common import plt

DEVICE_COUNTS = (1, 2, 4, 8)
PER_DEVICE_BATCH = 16
# --quick only checks that it runs: the same step with a smaller ResNet,
# which compiles in a fraction of the time.
MODEL, QUICK_MODEL = 'resnet20', 'resnet8'
AXIS_NAME = 'batch'
RESULT_PREFIX = 'SCALING_RESULT '


def measure(devices: int, quick: bool) -> dict[str, Any]:
  """Times the step with and without the axis on `devices` CPU devices, in
  a fresh process: JAX splits the host into devices only at start."""
  jax.config.update('jax_num_cpu_devices', devices)
  per_device = 2 if quick else PER_DEVICE_BATCH
  rate = overhead.plrs_rate()
  # Lays the batch (split) and the state (replicated) out on the devices
  # once, so the timed steps move no data between devices.
  lay_out = jax.pmap(lambda batch, state: (batch, state), in_axes=(0, None))
  loops = {}
  for name, axis_name in (('cross_replica', AXIS_NAME), ('independent', None)):
    w = workloads.workload(QUICK_MODEL if quick else MODEL,
                           devices * per_device,
                           axis_name=axis_name)
    batch, state = lay_out(
        jax.tree.map(lambda x: x.reshape(devices, per_device, *x.shape[1:]),
                     w.batch), workloads.train_state(w, optax.sgd(rate)))
    loops[name] = overhead.StepLoop(
        jax.pmap(workloads.train_fn(w, axis_name), axis_name=AXIS_NAME,
                 donate_argnums=0), state, batch)
  return {'platform': 'cpu', 'devices': devices, 'model': w.name,
          'per_device_batch': per_device, 'global_batch': devices * per_device,
          **overhead.measure(loops, 'independent', rounds=2 if quick else 10,
                             round_seconds=0.0 if quick else 1.0)}


def run_children(counts: list[int], quick: bool) -> list[dict[str, Any]]:
  """Measures each device count in a child process, one after the other
  (with `--quick`, where only running matters, all at once)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  # A forced host device count would clash with jax_num_cpu_devices.
  env['XLA_FLAGS'] = ' '.join(
      f for f in env.get('XLA_FLAGS', '').split()
      if not f.startswith('--xla_force_host_platform_device_count'))

  children = []

  def start(devices):
    print(f'{devices} device(s) ...', flush=True)
    children.append(subprocess.Popen(
        [sys.executable, '-m', 'benchmarks.scaling', '--devices',
         str(devices)] + ['--quick'] * quick, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return children[-1]

  def finish(devices, child):
    stdout, stderr = child.communicate()
    for line in stdout.splitlines():
      if line.startswith(RESULT_PREFIX):
        return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f'the child with {devices} devices failed (exit '
                       f'{child.returncode}):\n{stderr[-4000:]}')

  try:
    if quick:
      started = [start(n) for n in counts]
      return [finish(n, child) for n, child in zip(counts, started)]
    return [finish(n, start(n)) for n in counts]
  finally:  # Stopped (Ctrl-C, SIGTERM): no child outlives the program.
    for child in children:
      if child.poll() is None:
        child.kill()
        child.wait()


def plot(series: list[dict[str, Any]]):
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
  ax.set(xlabel=f'simulated CPU devices ({os.cpu_count()} cores shared)',
         ylabel='images/s', ylim=(0, ax.get_ylim()[1] * 1.1),
         title=f'{series[0]["model"]} PLRS step under pmap, '
         f'{series[0]["per_device_batch"]} images per device')
  ax.legend()
  fig.tight_layout()
  return fig


def main() -> None:
  args = common.parse_args(__doc__, devices=dict(type=common.integer(1),
                                                 help=argparse.SUPPRESS))
  if args.devices:  # a child
    print(RESULT_PREFIX + json.dumps(measure(args.devices, args.quick),
                                     default=float), flush=True)
    return
  counts = list(DEVICE_COUNTS[:2] if args.quick else DEVICE_COUNTS)
  series = run_children(counts, args.quick)
  base = series[0]['candidates']['cross_replica']['median_s_per_step']
  rows = []
  for e in series:
    c = e['candidates']
    step = c['cross_replica']['median_s_per_step']
    e.update(images_per_s=e['global_batch'] / step,
             step_time_vs_1_device=step / base)
    rows.append([
        e['devices'], e['global_batch'], e['images_per_s'],
        e['step_time_vs_1_device'],
        c['independent']['median_s_per_step'] * 1e3, step * 1e3,
        '{:.3f} [{:.3f}, {:.3f}]'.format(
            c['cross_replica']['ratio_vs_independent'],
            *c['cross_replica']['ratio_ci95']),
        all(v['transfer_free'] is True for v in c.values())])
  common.print_table(
      ['devices', 'global batch', 'images/s', 'step time vs 1 device',
       'ms/step without collectives', 'ms/step', 'with / without [95% CI]',
       'transfer-free'], rows,
      f'{series[0]["per_device_batch"]} images per simulated device, '
      f"{os.cpu_count()} cores shared; the collectives' cost: the step with "
      'the axis over the step without it [95% CI].')
  common.finish('scaling', {
      'model': QUICK_MODEL if args.quick else MODEL, 'schedule': 'plrs',
      'plrs_bounds': list(overhead.BOUNDS), 'device_counts': counts,
      'series': {'cpu': series}}, plot(series), args)


if __name__ == '__main__':
  common.start(main)
