"""S seeds in one vmapped program against S sequential runs, on digits.

For S = 1, 2, 4, 8 seeds of the default config (ResNet-8, im2col
convolutions) and of it with the MLP: one epoch of all S seeds as one
vmapped `lax.scan` (train/seeds.py) against S one-seed epochs, interleaved
after a warm-up; examples/s over all seeds. Also one ResNet-8 seed with
XLA's convolution against im2col inside the scan.

    python -m benchmarks.seeds_vmap [--quick] [--out DIR]
"""

import matplotlib.ticker
import numpy as np

from benchmarks import common
from benchmarks.common import plt
from train import seeds
from train.configs import default

NAME = 'seeds_vmap'


def _config(model: str, conv: str):
  config = default.get_config()
  config.model, config.num_epochs = model, 1
  config.model_kwargs = {'conv': conv} if model != 'mlp' else {}
  return config


def _epochs(runner: seeds.SeedRunner, groups: list[list[int]]):
  """A function training one epoch of every group, one call per group."""
  states = [runner.init(group) for group in groups]
  rows = [runner.rows(group, 0) for group in groups]

  def run():
    for i, (carry, keys) in enumerate(states):
      carry, _ = runner.train_epoch(carry, keys, rows[i])
      states[i] = (carry, keys)
    return [carry for carry, _ in states]

  return run


def compare(runner: seeds.SeedRunner, num_seeds: int, rounds: int) -> dict:
  """Times S seeds vmapped against S sequential single-seed epochs."""
  seed_list = list(range(num_seeds))
  times = common.time_interleaved({
      'vmapped': _epochs(runner, [seed_list]),
      'sequential': _epochs(runner, [[s] for s in seed_list]),
  }, rounds=rounds)
  examples = num_seeds * runner.steps_per_epoch * runner.config.batch_size
  vmapped, sequential = (float(np.median(times[k]))
                         for k in ('vmapped', 'sequential'))
  return {
      'num_seeds': num_seeds,
      'vmapped_epoch_s': times['vmapped'].tolist(),
      'sequential_epoch_s': times['sequential'].tolist(),
      'vmapped_examples_per_s': examples / vmapped,
      'sequential_examples_per_s': examples / sequential,
      'ratio': sequential / vmapped,
  }


def plot(results: dict):
  """Throughput against S, vmapped and sequential, one panel per model."""
  names = list(results['models'])
  fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    rows = results['models'][name]
    counts = [r['num_seeds'] for r in rows]
    for key, style, label in (('vmapped', 'o-', 'vmapped (one program)'),
                              ('sequential', 's--', 'sequential (S programs)')):
      ax.plot(counts, [r[f'{key}_examples_per_s'] for r in rows], style,
              label=label)
    for r in rows:
      ax.annotate(f'{r["ratio"]:.2f}x', (r['num_seeds'],
                                         r['vmapped_examples_per_s']),
                  textcoords='offset points', xytext=(0, 7), ha='center',
                  fontsize=8)
    ax.set(xscale='log', xlabel='seeds S', ylim=(0, None),
           ylabel='training examples / s (all seeds)',
           title=f'{name} on digits, batch {results["batch_size"]} per seed')
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle('S seeds: one vmapped program vs S sequential runs (labels: '
               'throughput ratio vmapped / sequential)', fontsize=10)
  fig.tight_layout()
  return fig


def main():
  args = common.parse_args(__doc__)
  seed_counts = [1, 2] if args.quick else [1, 2, 4, 8]
  rounds = 1 if args.quick else 5
  runners = {name: seeds.SeedRunner(_config(name, 'im2col'))
             for name in (['mlp'] if args.quick else ['resnet8', 'mlp'])}
  results = {'batch_size': default.get_config().batch_size,
             'schedule': default.SCHEDULES['plrs'],
             'seed_counts': seed_counts, 'rounds': rounds, 'models': {}}
  rows = []
  for name, runner in runners.items():
    results['models'][name] = []
    for count in seed_counts:
      row = compare(runner, count, rounds)
      results['models'][name].append(row)
      rows.append([name, count, row['vmapped_examples_per_s'],
                   row['sequential_examples_per_s'], row['ratio']])
      print(f'{name} S={count}: ratio {row["ratio"]:.2f}', flush=True)
  common.print_table(['model', 'S', 'vmapped ex/s', 'sequential ex/s',
                      'vmapped/sequential'], rows)
  if not args.quick:
    # One seed of ResNet-8 with each convolution, inside the scan.
    times = common.time_interleaved({
        conv: _epochs(seeds.SeedRunner(_config('resnet8', conv)), [[0]])
        for conv in ('xla', 'im2col')}, rounds=rounds)
    steps = runners['resnet8'].steps_per_epoch
    conv = results['conv_in_scan_ms_per_step'] = {
        conv: 1e3 * float(np.median(t)) / steps for conv, t in times.items()}
    print(f'\nresnet8 step inside lax.scan, one seed: lax.conv '
          f'{conv["xla"]:.3g} ms, im2col {conv["im2col"]:.3g} ms.')
  common.finish(NAME, results, plot(results), args)


if __name__ == '__main__':
  common.start(main)
