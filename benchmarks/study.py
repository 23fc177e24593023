"""Which schedule should a user pick? Every method tuned, then tested.

The protocol of DeepOBS and of the tuning playbook: each method's one rate
parameter (train/configs/fashion_mnist.py's RATE_FIELDS) is tuned on a log
grid against the validation split, at each budget, on tuning seeds; the
chosen value is then rerun with fresh test seeds (seed s starts from the same
parameters and reads the same batches under every method) and evaluated once
on the test set after the last step. The runs of one grid, or of one final,
are one vmapped program (train/seeds.py). Resumable cell by cell
(OUT/NAME.partial.json): a stopped study says the command that resumes it.

    python -m benchmarks.study [--tier=mlp|resnet20] [--quick] [--out DIR]
        [--data_dir DIR] [--methods a,b]
"""

import json
import math
import sys
import time

import jax
import numpy as np
from scipy import stats
import tqdm

from benchmarks import common
from benchmarks.common import plt
from train import input_pipeline
from train import range_test
from train import seeds
from train import workdir as workdir_lib
from train.configs import fashion_mnist

NAME = 'study_fashion_mnist'
CONFIG_FILE = 'train/configs/fashion_mnist.py'
METHODS = list(fashion_mnist.METHODS)
# Each grid spans 16x in factors of 2 around a center; a best value at an
# edge adds the next value past it, at most MAX_EXTENSIONS times.
GRID_STEPS = (-2, -1, 0, 1, 2)
MAX_EXTENSIONS = 4
# Schedule-free's rate is 10x plain SGD's at the center (its authors find
# 10-50x).
CENTERS = {'schedule_free_sgd': 1.0}
DEFAULT_CENTER = 0.1
# The change in validation accuracy, doubling the long budget, below which
# the best method has nearly stopped improving.
PLATEAU = 0.005
TIERS = {
    # Sized for two CPU cores (the vmapped MLP: docs/which_schedule.md);
    # the long budget is where validation accuracy stops improving (PLATEAU).
    'mlp': dict(model='mlp', budgets=(2, 12), tuning_seeds=(100, 101),
                test_seeds=(0, 1, 2, 3, 4), dataset='fashion_mnist',
                validation_split=10_000),
    # The convolutional tier, for a GPU: the same protocol with ResNet-20.
    'resnet20': dict(model='resnet20', budgets=(10, 50), batch_size=128,
                     tuning_seeds=(100, 101), test_seeds=(0, 1, 2, 3, 4),
                     dataset='fashion_mnist', validation_split=10_000),
}
# Checks that it runs: digits (in scikit-learn), 300 of its images held out.
QUICK = dict(model='mlp', budgets=(1, 2), tuning_seeds=(100,),
             test_seeds=(0, 1), dataset='digits', validation_split=300,
             batch_size=32, eval_batch_size=60, grid_steps=(-1, 0, 1),
             range_steps=20, power_iterations=5)
FLAGS = dict(
    tier=dict(default='mlp', choices=list(TIERS)),
    data_dir=dict(help="where Fashion-MNIST's IDX files are"),
    methods=dict(help='comma-separated subset of the methods'))


# The config fields a tier may set (TIERS, QUICK, --data_dir).
TIER_FIELDS = ('dataset', 'data_dir', 'validation_split', 'model',
               'batch_size', 'eval_batch_size')


def config_for(tier: dict, method: str, epochs: int, rates: dict[str, float]):
  """The config of `method` at `epochs`, its RATE_FIELDS set by `rates`."""
  config = fashion_mnist.get_config(method)
  for field in TIER_FIELDS:
    if tier.get(field) is not None:
      config[field] = tier[field]
  config.num_epochs = epochs
  for field, value in rates.items():
    config.schedule[field] = value
  return config


def rate_fields(method: str, value: float) -> dict[str, float]:
  """RATE_FIELDS of `method` at rate parameter `value`."""
  return {field: ratio * value
          for field, ratio in fashion_mnist.RATE_FIELDS[method].items()}


def reproduce(tier: dict, method: str, epochs: int,
              rates: dict[str, float]) -> str:
  """The `python -m train` command of a cell, `{seed}` to fill in."""
  flags = [f'--config={CONFIG_FILE}:{method}',
           f'--workdir=/tmp/study/{method}_{epochs}ep_seed{{seed}}',
           f'--config.num_epochs={epochs}']
  defaults = fashion_mnist.get_config(method)
  for field in TIER_FIELDS:
    if tier.get(field) is not None and tier[field] != defaults[field]:
      flags.append(f'--config.{field}={tier[field]}')
  flags += [f'--config.schedule.{k}={v:.6g}' for k, v in rates.items()]
  return ' '.join(['python -m train', *flags, '--config.seed={seed}'])


class Study:
  """The cells of one tier, each saved as it finishes."""

  def __init__(self, args, tier: dict):
    self.args, self.tier = args, tier
    self.partial = args.out / f'{NAME}.partial.json'
    self.key = {k: list(v) if isinstance(v, tuple) else v
                for k, v in tier.items() if k != 'data_dir'}
    saved = (json.loads(self.partial.read_text())
             if self.partial.exists() else {})
    self.cells = saved.get('cells', {}) if saved.get('key') == self.key else {}
    if self.cells:
      print(f'Resuming: {len(self.cells)} cells done ({self.partial}).',
            flush=True)
    reference = config_for(tier, 'plrs', tier['budgets'][0], {})
    self.dataset = input_pipeline.dataset_from_config(reference)
    self.steps_per_epoch = input_pipeline.steps_per_epoch(
        self.dataset, reference.batch_size)
    for method in args.methods_list:  # Checked before the first cell trains.
      for epochs in tier['budgets']:
        seeds.checked_steps_per_epoch(config_for(tier, method, epochs, {}),
                                      self.dataset)
    # The whole study in runs x epochs (grid extensions come on top), for
    # one progress bar with the time left.
    grid = len(tier.get('grid_steps', GRID_STEPS)) * len(tier['tuning_seeds'])
    tuned = sum(m in fashion_mnist.RATE_FIELDS for m in args.methods_list)
    per_epoch = (tuned * grid + len(tier['tuning_seeds'])
                 + len(args.methods_list) * len(tier['test_seeds']))
    self.bar = tqdm.tqdm(
        total=sum(tier['budgets']) * per_epoch
        + 2 * tier['budgets'][-1] * len(tier['tuning_seeds']),
        unit='run-epoch', desc='study', file=sys.stderr, dynamic_ncols=True)

  def cell(self, name: str, compute):
    """The saved cell `name`, or `compute()`'s, saved."""
    if name not in self.cells:
      # Saved, then counted: a stop in between says one cell too few.
      cells = {**self.cells, name: compute()}
      self.args.out.mkdir(parents=True, exist_ok=True)
      workdir_lib.atomic_write_text(self.partial, json.dumps(
          {'key': self.key, 'cells': cells}))
      self.cells = cells
    return self.cells[name]

  def saved(self) -> str:
    """What is saved, and the command that resumes (`common.on_stop`)."""
    if not self.cells:
      return 'no cell had finished: nothing is saved.'
    count = len(self.cells)
    return (('1 cell is' if count == 1 else f'{count} cells are')
            + f' saved in {self.partial}; '
            f'`{common.resume_command(self.args)}` resumes from them.')

  def train(self, method: str, epochs: int, seed_list, scales,
            final_test: bool = False, unit: dict | None = None) -> dict:
    """`seed_list` runs of `method` (vmapped), run i at rate parameter
    `scales[i]` (or at `unit`'s rates, scales 1)."""
    rates = rate_fields(method, 1.0) if unit is None else unit
    config = config_for(self.tier, method, epochs, rates)
    if config.model != 'mlp':
      config.model_kwargs = {'conv': 'im2col'}  # Inside the vmapped scan.
    runner = seeds.SeedRunner(config, dataset=self.dataset)
    desc = f'{method} {epochs} ep x{len(seed_list)}'
    with tqdm.tqdm(total=epochs, desc=desc, unit='epoch', file=sys.stderr,
                   dynamic_ncols=True, leave=False) as bar:
      out = runner.run(list(seed_list), rate_scales=list(scales),
                       final_test=final_test, progress=lambda epoch: (
                           bar.update(), common.check_stopped()))
    self.bar.update(epochs * len(seed_list))
    return out

  def tune(self, method: str, epochs: int) -> list[dict]:
    """The grid of `method` at `epochs`: validation accuracy per tuning
    seed at each value, extended past an edge that is best."""
    center = CENTERS.get(method, DEFAULT_CENTER)
    steps = self.tier.get('grid_steps', GRID_STEPS)
    values = [center * 2.0 ** k for k in steps]
    grid = self.cell(f'{epochs}/{method}/grid', lambda: self._grid(
        method, epochs, values))
    for _ in range(MAX_EXTENSIONS):
      best = grid.index(_best(grid))
      if 0 < best < len(grid) - 1:
        break
      value = grid[best]['value'] * (2.0 if best else 0.5)
      grid = sorted(grid + self.cell(
          f'{epochs}/{method}/grid/{value:.6g}',
          lambda v=value: self._grid(method, epochs, [v])),
                    key=lambda point: point['value'])
    return grid

  def _grid(self, method: str, epochs: int, values: list[float]) -> list:
    return [{'value': v, 'validation_accuracy': a}
            for v, a in zip(values, self._validate(method, epochs, values))]

  def _validate(self, method: str, epochs: int, values: list[float],
                unit: dict | None = None) -> list[list[float]]:
    """Final validation accuracy of each tuning seed at each of `values`,
    all in one vmapped program."""
    tuning = list(self.tier['tuning_seeds'])
    out = self.train(method, epochs, tuning * len(values),
                     np.repeat(values, len(tuning)), unit=unit)
    return _final(out['validation_accuracy']).reshape(len(values),
                                                      -1).tolist()

  def final(self, method: str, epochs: int, value: float | None,
            unit: dict | None = None) -> dict:
    """The test seeds at `value` (or at `unit`'s rates)."""
    test = list(self.tier['test_seeds'])
    start = time.perf_counter()
    out = self.train(method, epochs, test, [value or 1.0] * len(test),
                     final_test=True, unit=unit)
    rates = np.asarray(out['lr'][0], float)
    every = max(1, rates.size // 1000)
    result = {
        'test_accuracy': out['final_test_accuracy'].tolist(),
        'train_loss': _final(out['train_loss']).tolist(),
        'validation_accuracy': _final(out['validation_accuracy']).tolist(),
        'validation_accuracy_curve': out['validation_accuracy'].tolist(),
        'learning_rate_seed0': rates[::every].tolist(),
        'learning_rate_seed0_steps': np.arange(rates.size)[::every].tolist(),
        'seconds': time.perf_counter() - start}
    if 'final_test_accuracy_recomputed_bn' in out:
      result['test_accuracy_recomputed_bn'] = (
          out['final_test_accuracy_recomputed_bn'].tolist())
    if 'drops' in out:  # AutoDrop's: whether it acted within the budget.
      result['drops'] = _final(out['drops']).tolist()
    return result

  def range_test(self) -> dict:
    """plrs_range_test's bounds: `python -m train.range_test`'s rule."""
    def compute():
      bounds, _ = range_test.measure(
          config_for(self.tier, 'plrs', self.tier['budgets'][0], {}),
          min_lr=1e-4, max_lr=10.0,
          num_steps=self.tier.get('range_steps', 100),
          power_iterations=self.tier.get('power_iterations', 100),
          dataset=self.dataset)
      return {k: v for k, v in bounds.items()
              if k not in ('learning_rates', 'losses')}
    return self.cell('range_test', compute)

  def budget(self, epochs: int, methods: list[str]) -> dict:
    """Every method at `epochs`: grid, choice, final runs."""
    results = {}
    bounds = self.range_test()
    for method in methods:
      if method == 'plrs_range_test':
        unit = {'min_value': bounds['suggested_min'],
                'max_value': bounds['suggested_max']}
        tuning = self.cell(f'{epochs}/{method}/tuning', lambda: self._validate(
            method, epochs, [1.0], unit)[0])
        r = {'bounds': [unit['min_value'], unit['max_value']],
             'validation_accuracy_tuning_seeds': tuning}
        rates, value = unit, None
      elif method == 'mlr_snet':
        r, rates, value = {'bounds': 'learnt'}, {}, None
        unit = {}
      else:
        grid = self.tune(method, epochs)
        value = _best(grid)['value']
        r = {'grid': grid, 'chosen': value}
        rates, unit = rate_fields(method, value), None
      r.update(self.cell(f'{epochs}/{method}/final', lambda: self.final(
          method, epochs, value, unit)))
      r['reproduce'] = reproduce(self.tier, method, epochs, rates)
      if 'drops' in r and not any(r['drops']):
        r['note'] = (f'no drop within {epochs} epochs: it ran as its '
                     'optimizer at a constant rate')
      results[method] = r
      self.bar.write(f'{epochs} epochs, {method}: chosen {value}, test '
                     f'accuracy {100 * np.mean(r["test_accuracy"]):.2f}%')
    if {'plrs', 'plrs_range_test'} <= set(results):
      results['plrs_range_test']['on_plrs_curve'] = _on_curve(
          results['plrs_range_test'], results['plrs'])
    return results

  def plateau(self, epochs: int, results: dict) -> dict:
    """The best method at `epochs` (by validation accuracy on the tuning
    seeds) trained twice as long: the change in validation accuracy."""
    tuned = {m: _mean(_best(r['grid']))
             for m, r in results.items() if 'grid' in r}
    method = max(tuned, key=tuned.get)
    value = results[method]['chosen']
    longer = self.cell(f'{2 * epochs}/{method}/plateau', lambda: self._validate(
        method, 2 * epochs, [value])[0])
    change = float(np.mean(longer) - tuned[method])
    return {'method': method, 'value': value, 'epochs': 2 * epochs,
            'validation_accuracy': longer,
            'validation_accuracy_at_budget': tuned[method],
            'validation_accuracy_change': change}


def _on_curve(range_tested: dict, plrs: dict) -> dict:
  """Where the range test's L_max falls on plrs's tuning curve."""
  values = [point['value'] for point in plrs['grid']]
  high = range_tested['bounds'][1]
  return {'L_max': high, 'plrs_chosen_L_max': plrs['chosen'],
          'chosen_over_range_test': plrs['chosen'] / high,
          'grid_below': max([v for v in values if v <= high], default=None),
          'grid_above': min([v for v in values if v >= high], default=None),
          'validation_accuracy_at_L_max': float(np.mean(
              range_tested['validation_accuracy_tuning_seeds'])),
          'validation_accuracy_at_chosen': _mean(_best(plrs['grid']))}


def _mean(point: dict) -> float:
  """A grid point's validation accuracy, averaged over the tuning seeds."""
  return float(np.mean(point['validation_accuracy']))


def _best(grid: list[dict]) -> dict:
  """The grid point of the highest mean (the lowest value among ties)."""
  return max(grid, key=_mean)


def _final(per_epoch) -> np.ndarray:
  return np.asarray(per_epoch, float)[:, -1]


def holm(p_values: dict[str, float], alpha: float = 0.05) -> dict[str, bool]:
  """Holm's step-down: which hypotheses are rejected at family-wise `alpha`.
    >>> holm({'a': 0.01, 'b': 0.04, 'c': 0.03})
    {'a': True, 'b': False, 'c': False}
  """
  ordered = sorted(p_values, key=p_values.get)
  rejected, going = {}, True
  for i, name in enumerate(ordered):
    going = going and p_values[name] <= alpha / (len(ordered) - i)
    rejected[name] = going
  return {name: rejected[name] for name in p_values}


def compare(results: dict, reference: str) -> dict[str, dict]:
  """Each method minus `reference`, paired by test seed: mean, 95%
  t-interval, p-value and whether it survives Holm's correction over the
  other methods."""
  base = np.asarray(results[reference]['test_accuracy'], float)
  out = {}
  for name, r in results.items():
    if name == reference:
      continue
    difference = np.asarray(r['test_accuracy'], float) - base
    mean = float(difference.mean())
    if np.ptp(difference) == 0:
      # Every seed the same difference: no spread to test against (a
      # handful of test images at most); not called significant.
      out[name] = {'mean': mean, 'ci95': [mean, mean], 'p': 1.0}
      continue
    test = stats.ttest_1samp(difference, 0.0)
    interval = test.confidence_interval()
    out[name] = {'mean': mean,
                 'ci95': [float(interval.low), float(interval.high)],
                 'p': float(test.pvalue)}
  significant = holm({name: d['p'] for name, d in out.items()})
  for name, d in out.items():
    d['holm'] = significant[name]
  return out


def summarize(results: dict) -> dict:
  """Per budget: the best method (by mean test accuracy) and each method's
  paired differences to it and to `plrs`."""
  best = max(results, key=lambda m: np.mean(results[m]['test_accuracy']))
  return {'best': best, 'minus_best': compare(results, best),
          'minus_plrs': compare(results, 'plrs') if 'plrs' in results else {}}


def _difference(d: dict | None) -> str:
  if d is None:
    return ''
  low, high = np.multiply(100, d['ci95'])
  return (f'{100 * d["mean"]:+.2f} [{low:+.2f}, {high:+.2f}]'
          + (' *' if d['holm'] else ''))


def print_budget(epochs: int, results: dict, summary: dict) -> None:
  """The budget's table: chosen value, test accuracy, the differences."""
  rows = []
  for method, r in sorted(results.items(), key=lambda item: -np.mean(
      item[1]['test_accuracy'])):
    chosen = (f'{r["chosen"]:.4g}' if 'chosen' in r else
              'learnt' if r['bounds'] == 'learnt' else
              '[{:.4g}, {:.4g}]'.format(*r['bounds']))
    accuracy = 100 * np.asarray(r['test_accuracy'])
    rows.append([method, chosen,
                 f'{accuracy.mean():.2f} ({accuracy.std(ddof=1):.2f})',
                 _difference(summary['minus_best'].get(method)),
                 _difference(summary['minus_plrs'].get(method))])
  common.print_table(
      ['method', 'rate', 'test acc % mean (SD)',
       f'minus {summary["best"]}, points [95% CI]',
       'minus plrs, points [95% CI]'], rows,
      title=f'{epochs} epochs (* survives Holm over the '
            f'{len(results) - 1} comparisons of its column)')


def plot(budgets: dict, settings: dict):
  """Per budget: test accuracy with 95% intervals, validation accuracy
  against the rate, seed 0's rates."""
  fig, axes = plt.subplots(3, len(budgets), figsize=(8 * len(budgets), 17),
                           squeeze=False)
  tab20 = plt.get_cmap('tab20').colors
  colors = tab20[0::2] + tab20[1::2]
  for column, (epochs, results) in enumerate(budgets.items()):
    methods = sorted(results, key=lambda m: np.mean(
        results[m]['test_accuracy']))
    ax = axes[0, column]
    for y, method in enumerate(methods):
      accuracy = 100 * np.asarray(results[method]['test_accuracy'])
      half = stats.t.ppf(0.975, accuracy.size - 1) * stats.sem(accuracy)
      ax.errorbar(accuracy.mean(), y, xerr=half, fmt='o', capsize=3,
                  color='C3' if method.startswith('plrs') else 'C0')
      ax.plot(accuracy, [y] * accuracy.size, '.', color='0.6', ms=3)
    ax.set(yticks=range(len(methods)), yticklabels=methods,
           xlabel='test accuracy % (mean, 95% interval; dots: seeds)',
           title=f'{epochs} epochs')
    ax = axes[1, column]
    for i, method in enumerate(METHODS):
      r = results.get(method, {})
      style = '--' if i >= len(colors) // 2 else '-'
      if 'grid' in r:
        values = [p['value'] for p in r['grid']]
        means = [100 * _mean(p) for p in r['grid']]
        ax.plot(values, means, style, marker='o', ms=3, label=method,
                color=colors[i % len(colors)])
      elif method == 'plrs_range_test' and r:
        ax.plot(r['bounds'][1], 100 * np.mean(
            r['validation_accuracy_tuning_seeds']), 'k*', ms=12,
                label='plrs_range_test (at its L_max)')
    ax.set(xscale='log', xlabel='rate parameter (peak; PLRS: L_max)',
           ylabel='validation accuracy % (tuning seeds)',
           title=f'{epochs} epochs: sensitivity to the rate')
    finite = [100 * _mean(p) for r in results.values()
              for p in r.get('grid', [])]
    if finite:
      ax.set_ylim(max(np.nanmax(finite) - 15, np.nanmin(finite)),
                  np.nanmax(finite) + 1)
    ax.legend(fontsize=7, ncol=2)
    ax = axes[2, column]
    for i, method in enumerate(METHODS):
      if method not in results:
        continue
      r = results[method]
      noisy = method.startswith('plrs')
      ax.plot(r['learning_rate_seed0_steps'], r['learning_rate_seed0'],
              '--' if i >= len(colors) // 2 else '-',
              color=colors[i % len(colors)], lw=0.5 if noisy else 1.2,
              alpha=0.6 if noisy else 0.9, label=method)
    ax.set(yscale='log', xlabel='step', ylabel="seed 0's learning rate",
           title=f'{epochs} epochs: the chosen schedules')
    ax.legend(fontsize=7, ncol=2)
  for ax in axes.flat:
    ax.grid(alpha=0.3)
  fig.suptitle(f'{settings["model"]} on {settings["dataset"]}: every method '
               f'tuned on validation data, {len(settings["test_seeds"])} '
               'fresh test seeds', fontsize=12)
  fig.tight_layout()
  return fig


def run_settings(tier: dict, reference, runner) -> dict:
  """The model, data, splits and seeds of a study's runs, for its JSON.

  `runner` holds the dataset and the steps per epoch (a `Study`, or the
  twins study's runner).
  """
  dataset = runner.dataset
  return {
      'model': tier['model'], 'dataset': tier['dataset'],
      'batch_size': reference.batch_size,
      'splits': {'train': len(dataset.train),
                 'validation': len(dataset.validation),
                 'test': len(dataset.test)},
      'split_seed': reference.split_seed,
      'steps_per_epoch': runner.steps_per_epoch,
      'tuning_seeds': list(tier['tuning_seeds']),
      'test_seeds': list(tier['test_seeds'])}


def main():
  args = common.parse_args(__doc__, **FLAGS)
  tier = dict(TIERS[args.tier], **(QUICK if args.quick else {}))
  tier['data_dir'] = args.data_dir
  methods = METHODS
  if args.methods:
    methods = [m.strip() for m in args.methods.split(',') if m.strip()]
    if not methods or (unknown := [m for m in methods if m not in METHODS]):
      raise common.UsageError(
          f'--methods={args.methods} names ' + (
              f'unknown methods {unknown}' if methods else 'no method')
          + f'; choose from {", ".join(METHODS)}.')
  args.methods_list = methods
  study = Study(args, tier)
  common.on_stop(study.saved)
  size = len(study.dataset.train)
  print(f'{tier["model"]} on {tier["dataset"]}: {size} training, '
        f'{len(study.dataset.validation)} validation, '
        f'{len(study.dataset.test)} test images; budgets {tier["budgets"]} '
        f'epochs of {study.steps_per_epoch} steps.', flush=True)
  images = study.bar.total * size / 1e6
  print(f'The protocol: {study.bar.total:,} run-epochs ({images:,.0f} '
        'million training images) before any grid is extended.', flush=True)
  start = time.perf_counter()
  budgets = {}
  for epochs in tier['budgets']:
    budgets[epochs] = study.budget(epochs, methods)
  plateau = study.plateau(tier['budgets'][-1], budgets[tier['budgets'][-1]])
  study.bar.close()
  summaries = {epochs: summarize(r) for epochs, r in budgets.items()}
  for epochs, results in budgets.items():
    print_budget(epochs, results, summaries[epochs])
  print(f'\nPlateau check: {plateau["method"]} at {plateau["epochs"]} epochs '
        f'changes validation accuracy by '
        f'{100 * plateau["validation_accuracy_change"]:+.2f} points'
        + ('' if abs(plateau['validation_accuracy_change']) < PLATEAU else
           f' (not under {100 * PLATEAU:.1f}: lengthen the long budget)'))
  bounds = study.cells['range_test']
  reference = config_for(tier, 'plrs', tier['budgets'][0], {})
  settings = {
      **run_settings(tier, reference, study),
      'grid': 'factors of 2 around 0.1 (schedule_free_sgd: 1.0), extended '
              'past a best edge',
      'optimizer': 'plain SGD (no momentum, no weight decay) unless the '
                   "method's recipe says otherwise (train/configs/"
                   'fashion_mnist.py)',
      'range_test': bounds, 'command': common.command_line(),
      'commit': common.CODE[0],
      'seconds': time.perf_counter() - start}
  common.finish(NAME if not args.quick else f'{NAME}_quick', {
      'settings': settings, 'plateau_check': plateau,
      'budgets': {str(e): r for e, r in budgets.items()},
      'comparisons': {str(e): s for e, s in summaries.items()}},
                plot(budgets, settings), args)
  study.partial.unlink(missing_ok=True)


if __name__ == '__main__':
  common.start(main)
