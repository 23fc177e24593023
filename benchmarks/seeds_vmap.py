"""S seeds in one vmapped program against S sequential runs, on digits.

    python -m benchmarks.seeds_vmap [--quick] [--out DIR]

For S = 1, 2, 4, 8 seeds of the default config (ResNet-8 on scikit-learn's
digits, batch 32, PLRS) and of the same config with the MLP of
train/models.py, one training epoch of all S seeds as one `jax.vmap`ped,
jitted `lax.scan` (train/seeds.py) is timed against S epochs of the same
program compiled for one seed, run one after another. Both are timed after a
warm-up epoch (no compilation), in interleaved rounds; the throughput is
training examples per second summed over the seeds, and the ratio is
vmapped / sequential. ResNet-8 runs with the im2col convolution that
train/seeds.py recommends; one seed of it also runs with XLA's own
convolution, to measure what that choice is worth inside the scan
(train/im2col.py explains why it matters on XLA:CPU).

Writes OUT/seeds_vmap.json and OUT/seeds_vmap.png.
"""

import matplotlib
import matplotlib.ticker
import numpy as np

from benchmarks import common
from train import seeds
from train.configs import default

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

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


def plot(results: dict, path):
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
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main():
  args = common.parse_args(__doc__.splitlines()[0])
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
  if not args.quick:
    # One seed of ResNet-8 with each convolution, inside the scan.
    times = common.time_interleaved({
        conv: _epochs(seeds.SeedRunner(_config('resnet8', conv)), [[0]])
        for conv in ('xla', 'im2col')}, rounds=rounds)
    steps = runners['resnet8'].steps_per_epoch
    results['conv_in_scan_ms_per_step'] = {
        conv: 1e3 * float(np.median(t)) / steps for conv, t in times.items()}
  print()
  print(common.markdown_table(
      ['model', 'S', 'vmapped ex/s', 'sequential ex/s', 'vmapped/sequential'],
      rows))
  if 'conv_in_scan_ms_per_step' in results:
    conv = results['conv_in_scan_ms_per_step']
    print(f'\nresnet8 step inside lax.scan, one seed: lax.conv '
          f'{conv["xla"]:.3g} ms, im2col {conv["im2col"]:.3g} ms.')
  path = common.write_results(NAME, results, args.out, quick=args.quick)
  figure = plot(results, args.out / f'{NAME}.png')
  print(f'\nResults: {path}\nFigure: {figure}')


if __name__ == '__main__':
  main()
