"""Does drawing the rate help? Each PLRS schedule against its twin.

A random schedule's effect is measured against its deterministic twin, whose
rate at every step is the random one's mean: PLRS at level c draws from
[0.7 c s(t), c s(t)] (s: the schedule's envelope), whose mean is 0.85 c s(t),
the twin's rate. The pairs (random arm: twin):

- plrs: constant. U[0.7 c, c] at every step against 0.85 c.
- plrs_linear_decay: linear_decay. The draw follows the whole envelope,
  warmup included: the twin, at peak 0.85 c, is the mean at every step.
- plrs_wsd: wsd. plrs_wsd draws only in its stable phase (75% of the steps);
  its 5% warmup and 20% cooldown are wsd's at peak c. The twin is wsd at
  peak c with its stable rate at 0.85 c (`stable_value`): the same warmup
  and cooldown, the mean in between.

Hypotheses, stated before the runs. Primary, for each pair at each budget
(2 and 12 epochs of the 784-256-256-10 MLP on Fashion-MNIST, batch 128,
plain SGD): at the random arm's level c tuned on validation data, the mean
paired difference in test accuracy, random arm at c minus twin at c (rate
the mean of c's draw), over the fresh test seeds, is zero; two-sided paired t-tests, Holm's
correction over the six at family-wise 0.05. Secondary: the difference with
each arm at its own tuned level; the difference along the grid of levels
(final validation accuracy, tuning seeds).

Protocol. Each pair is evaluated on a common grid of levels, both arms at
every level on the tuning seeds: factors of 2 around a center, extended past
an edge that is best or tied with the best (at most MAX_EXTENSIONS times),
then refined until each arm's best level has evaluated neighbours within a
factor 2^(1/2) on both sides (levels lie on the lattice center x 2^(j/2)).
Each arm's level is the best by mean final validation accuracy; the test
seeds then run the random arm and the twin at the random arm's level, and
the twin at its own. Seed s starts from the same parameters and reads the
same batches in every arm.

Rates. Levels have 4 significant digits and every rate field 6, so that each
run's `reproduce` command sets exactly the run's values. Each run's schedule
is built from that command's config and evaluated step by step before
training, and the vmapped runs step at those rates: bit for bit the rates
`python -m train` logs with the command (tests/test_twins.py). Resumable cell
by cell (OUT/NAME.partial.json); Ctrl-C or SIGTERM stops at the end of the
epoch in progress (under a minute), saying what is saved and how to resume.

    python -m benchmarks.twins [--tier=mlp|cnn] [--quick] [--out DIR]
        [--data_dir DIR] [--pairs a,b]
"""

import contextlib
import io
import json
import math
import signal
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from benchmarks import common
from benchmarks import study
from benchmarks.common import plt
from train import engine
from train import errors
from train import input_pipeline
from train import optimizers
from train import seeds
from train.configs import fashion_mnist

NAME = 'twins_fashion_mnist'
# Each random arm and its deterministic twin.
TWINS = {'plrs': 'constant', 'plrs_wsd': 'wsd',
         'plrs_linear_decay': 'linear_decay'}
# L_min / L_max of every random arm (the paper's 0.07 / 0.1), and the mean
# rate over the maximum.
MIN_RATIO = fashion_mnist.RATE_FIELDS['plrs']['min_value']
MEAN_RATIO = (1 + MIN_RATIO) / 2
# Each twin's schedule fields, as multiples of the random arm's level: the
# random arm's mean at every step.
TWIN_FIELDS = {'constant': {'value': MEAN_RATIO},
               'wsd': {'peak_value': 1.0, 'stable_value': MEAN_RATIO},
               'linear_decay': {'peak_value': MEAN_RATIO}}
# Levels are center x 2^(j / FINE_PER_OCTAVE): the coarse grid and its
# extensions take every FINE_PER_OCTAVE-th j (factors of 2), the fine pass
# every j (factors of 2^(1/2)).
FINE_PER_OCTAVE = 2
MAX_EXTENSIONS = 4
LEVEL_DIGITS = 4
FIELD_DIGITS = 6
ALPHA = 0.05
TIERS = {
    # Sized for two CPU cores: at most 5,544 run-epochs before any
    # extension; the plan line prints the minutes at this machine's speed.
    'mlp': dict(model='mlp', budgets=(2, 12), center=0.2,
                coarse_steps=(-2, -1, 0, 1, 2),
                tuning_seeds=(200, 201, 202, 203),
                test_seeds=tuple(range(1000, 1020)),
                dataset='fashion_mnist', validation_split=10_000),
    # For one GPU: ResNet-8 with shorter budgets, two tuning seeds and a
    # coarse grid of three, about 1,000 run-epochs; sized from ResNet-8's
    # step cost, not measured on a GPU: the plan line says.
    'cnn': dict(model='resnet8', budgets=(1, 3), center=0.2,
                coarse_steps=(-1, 0, 1), tuning_seeds=(200, 201),
                test_seeds=tuple(range(1000, 1020)),
                dataset='fashion_mnist', validation_split=10_000),
}
# Checks that it runs: digits (in scikit-learn), 300 of its images held out.
QUICK = dict(budgets=(1, 2), coarse_steps=(-1, 0, 1),
             tuning_seeds=(200, 201), test_seeds=(1000, 1001, 1002),
             dataset='digits', validation_split=300, batch_size=32,
             eval_batch_size=60)
FLAGS = dict(
    tier=dict(default='mlp', choices=list(TIERS)),
    data_dir=dict(help="where Fashion-MNIST's IDX files are"),
    pairs=dict(help='comma-separated subset of the random arms: '
               + ', '.join(TWINS)))
ARMS = ('random', 'twin')
HYPOTHESES = {
    'primary': 'for each pair at each budget, at the random arm\'s tuned '
               'level c: the mean paired difference in test accuracy, '
               'random arm at c minus its twin at c (the random arm\'s mean '
               'rate at every step), is zero; '
               'two-sided paired t-tests over the test seeds, Holm\'s '
               f'correction over the family at {ALPHA}',
    'secondary': ['the difference with each arm at its own tuned level',
                  'the difference along the grid of levels (final '
                  'validation accuracy, tuning seeds)'],
    'plrs_wsd': 'plrs_wsd draws in its stable phase only; its twin, wsd at '
                'peak c, has the same warmup (5%) and cooldown (20%) and the '
                'mean rate, 0.85 c, in between',
}


def level(value: float) -> float:
  """`value` to LEVEL_DIGITS significant digits.
    >>> level(0.2 * 2 ** 0.5)
    0.2828
  """
  return float(f'{value:.{LEVEL_DIGITS - 1}e}')


def lattice(center: float, j: int) -> float:
  """The level center x 2^(j / FINE_PER_OCTAVE).
    >>> lattice(0.2, 1), lattice(0.2, 2), lattice(0.2, 3)
    (0.2828, 0.4, 0.5657)
  """
  return level(center * 2.0 ** (j / FINE_PER_OCTAVE))


def _index(center: float, value: float) -> int:
  return round(FINE_PER_OCTAVE * math.log2(value / center))


def arm_fields(pair: str, arm: str, value: float) -> tuple[str, dict]:
  """(method, schedule fields) of `arm` of `pair` at level `value`: the
  random arm's rate parameter at `value`, the twin's TWIN_FIELDS, each field
  to FIELD_DIGITS significant digits (exact for 4-digit levels).
    >>> arm_fields('plrs', 'twin', 0.2828)
    ('constant', {'value': 0.24038})
    >>> arm_fields('plrs_wsd', 'twin', 0.2828)
    ('wsd', {'peak_value': 0.2828, 'stable_value': 0.24038})
  """
  if arm == 'random':
    method, fields = pair, study.rate_fields(pair, value)
  else:
    method = TWINS[pair]
    fields = {k: ratio * value for k, ratio in TWIN_FIELDS[method].items()}
  return method, {k: float(f'{v:.{FIELD_DIGITS}g}')
                  for k, v in fields.items()}


def reproduce(tier: dict, pair: str, arm: str, epochs: int,
              value: float) -> str:
  """The `python -m train` command of `arm` of `pair` at level `value`
  (`study.reproduce`'s, in a workdir of its own), `{seed}` to fill in."""
  method, fields = arm_fields(pair, arm, value)
  return study.reproduce(tier, method, epochs, fields).replace(
      '--workdir=/tmp/study/', f'--workdir=/tmp/twins/{arm}{value:g}_')


def _means(values: list[list[float]]) -> np.ndarray:
  return np.asarray([np.mean(v) for v in values])


def best_index(means) -> int:
  """The highest mean's index (the lowest level among ties)."""
  return int(np.argmax(means))


def next_levels(center: float, levels: list[float], means,
                can_extend: bool = True) -> tuple[list[float], bool]:
  """(levels to add, whether they extend the grid) for one arm's curve on
  the lattice of `center`.

  An edge that is best or tied with the best adds the level a factor 2 past
  it (while `can_extend`); otherwise the best level gets its lattice
  neighbours, a factor 2^(1/2) away, where its evaluated ones are farther.
    >>> next_levels(0.2, [0.1, 0.2, 0.4], [0.8, 0.9, 0.85])
    ([0.1414, 0.2828], False)
    >>> next_levels(0.2, [0.1, 0.2, 0.4], [0.8, 0.9, 0.9])
    ([0.8], True)
  """
  means = np.asarray(means, float)
  j = [_index(center, v) for v in levels]
  top = np.isclose(means, means.max(), rtol=0, atol=1e-12)
  edges = [i for i in (0, len(levels) - 1) if top[i]]
  if edges and can_extend:
    return sorted({lattice(center, j[0] - FINE_PER_OCTAVE) if i == 0 else
                   lattice(center, j[-1] + FINE_PER_OCTAVE)
                   for i in edges}), True
  i = best_index(means)
  return [lattice(center, j[i] + side) for side in (-1, 1)
          if 0 <= i + side < len(levels) and abs(j[i + side] - j[i]) > 1
          ], False


def paired(a, b) -> dict:
  """a - b paired by seed: `study.compare`'s mean, 95% t-interval and p,
  with the differences' SD, the interval's half-width and n."""
  d = study.compare({'a': {'test_accuracy': list(a)},
                     'b': {'test_accuracy': list(b)}}, 'b')['a']
  difference = np.subtract(a, b)
  return {'mean': d['mean'], 'ci95': d['ci95'], 'p': d['p'],
          'sd': float(difference.std(ddof=1)) if difference.size > 1 else 0.0,
          'half_width': (d['ci95'][1] - d['ci95'][0]) / 2,
          'n': int(difference.size)}


class TableRunner(seeds.SeedRunner):
  """`seeds.SeedRunner` whose run i steps at the rates of a table, one per
  step, passed as its `rate_scales[i]`, instead of its config's schedule:
  one program trains runs of any schedule with the config's optimizer."""

  def optimizer(self, schedule_key, initial_loss, rate_scale=1.0):
    if jnp.ndim(rate_scale) != 1:
      return super().optimizer(schedule_key, initial_loss, rate_scale)
    table = jnp.asarray(rate_scale)
    return optimizers.create_optimizer(
        self.config, lambda count: table[jnp.clip(count, 0, len(table) - 1)],
        self.steps_per_epoch, initial_loss=initial_loss,
        num_classes=self.dataset.num_classes)


class Twins:
  """The cells of one tier, each saved as it finishes."""

  cell = study.Study.cell  # The study's resumable cells.

  def __init__(self, args, tier: dict, name: str = NAME):
    self.args, self.tier = args, tier
    self.partial = args.out / f'{name}.partial.json'
    self.key = {
        **{k: list(v) if isinstance(v, tuple) else v
           for k, v in tier.items() if k != 'data_dir'},
        'protocol': [MIN_RATIO, FINE_PER_OCTAVE, MAX_EXTENSIONS,
                     LEVEL_DIGITS, FIELD_DIGITS]}
    self.cells = self.saved()
    self.reference = study.config_for(tier, 'plrs', tier['budgets'][0], {})
    self.dataset = input_pipeline.dataset_from_config(self.reference)
    self.steps_per_epoch = input_pipeline.steps_per_epoch(
        self.dataset, self.reference.batch_size)
    self._runners, self._tables = {}, {}
    self.bar = None

  def saved(self) -> dict:
    """The cells the partial file holds for this tier."""
    saved = (json.loads(self.partial.read_text())
             if self.partial.exists() else {})
    return saved.get('cells', {}) if saved.get('key') == self.key else {}

  def runner(self, epochs: int) -> TableRunner:
    """The runner of every arm at `epochs` (they share the optimizer)."""
    if epochs not in self._runners:
      config = study.config_for(self.tier, 'plrs', epochs, {})
      if config.model != 'mlp':
        config.model_kwargs = {'conv': 'im2col'}  # Inside the vmapped scan.
      self._runners[epochs] = TableRunner(config, dataset=self.dataset)
    return self._runners[epochs]

  def rates(self, epochs: int, method: str, fields: dict,
            seed_list) -> np.ndarray:
    """(seeds, steps) rates of `method`'s config at `fields`: its schedule
    evaluated one step at a time, as `python -m train` does."""
    config = study.config_for(self.tier, method, epochs, fields)
    ran = self.runner(epochs).config
    for field in config:
      if field not in ('schedule', 'model_kwargs') and (
          config[field] != ran[field]):
        raise ValueError(f'{method} differs from the runner in {field}: '
                         f'{config[field]} and {ran[field]}.')
    cache = (epochs, method, tuple(sorted(fields.items())))
    if cache not in self._tables:
      steps = epochs * self.steps_per_epoch
      self._tables[cache] = jax.jit(lambda key: jax.lax.map(
          optimizers.create_schedule(
              config.schedule, key=key, steps_per_epoch=self.steps_per_epoch,
              num_steps=steps), jnp.arange(steps)))
    return np.stack([np.asarray(self._tables[cache](
        engine.run_keys(seed).schedule)) for seed in seed_list])

  def train(self, epochs: int, runs: list[tuple[str, dict]], seed_list,
            final_test: bool = False) -> tuple[dict, np.ndarray]:
    """Each of `runs` (method, fields) on every seed of `seed_list`, in one
    vmapped program: (the runner's output, the rates), run-major."""
    tables = np.concatenate([self.rates(epochs, method, fields, seed_list)
                             for method, fields in runs])
    all_seeds = list(seed_list) * len(runs)
    with tqdm.tqdm(total=epochs, unit='epoch', file=sys.stderr, leave=False,
                   desc=f'{len(runs)} x {len(seed_list)} runs',
                   dynamic_ncols=True) as bar:
      out = self.runner(epochs).run(
          all_seeds, rate_scales=list(tables), final_test=final_test,
          progress=lambda epoch: (bar.update(), common.check_stopped()))
    if not np.array_equal(out['lr'], tables):
      raise RuntimeError('the runs did not step at their rates: '
                         'train/seeds.py changed how rate_scales arrive.')
    self.bar.update(epochs * len(all_seeds))
    return out, tables

  def evaluate(self, pair: str, epochs: int, levels: list[float]) -> dict:
    """Both arms at each of `levels` on the tuning seeds: final validation
    accuracy per arm, level and seed."""
    tuning = list(self.tier['tuning_seeds'])
    runs = [arm_fields(pair, arm, v) for arm in ARMS for v in levels]
    start = time.perf_counter()
    out, _ = self.train(epochs, runs, tuning)
    final = out['validation_accuracy'][:, -1].reshape(2, len(levels), -1)
    return {'levels': levels, **{arm: final[i].tolist()
                                 for i, arm in enumerate(ARMS)},
            'run_epochs': epochs * len(runs) * len(tuning),
            'seconds': time.perf_counter() - start}

  def tune(self, pair: str, epochs: int) -> tuple[list[dict], int]:
    """The pair's grid (per level, each arm's validation accuracy per
    tuning seed, extended and refined by `next_levels`) and its run-epochs."""
    center = self.tier['center']
    todo = [lattice(center, FINE_PER_OCTAVE * k)
            for k in self.tier['coarse_steps']]
    grid, extensions, spent = {}, 0, 0
    while todo:
      name = f'{epochs}/{pair}/levels/' + ','.join(f'{v:g}' for v in todo)
      done = self.cell(name, lambda v=todo: self.evaluate(pair, epochs, v))
      spent += done['run_epochs']
      for i, value in enumerate(done['levels']):
        grid[value] = {arm: done[arm][i] for arm in ARMS}
      levels = sorted(grid)
      adds = [next_levels(center, levels,
                          _means([grid[v][arm] for v in levels]),
                          extensions < MAX_EXTENSIONS) for arm in ARMS]
      extend = any(e for new, e in adds if new)
      todo = sorted({v for new, e in adds if e == extend for v in new}
                    - set(grid))
      extensions += extend and bool(todo)
    return [{'level': v, **grid[v]} for v in sorted(grid)], spent

  def final(self, pair: str, epochs: int, chosen: dict) -> dict:
    """The test seeds: the random arm and its twin at the random arm's
    level, and the twin at its own."""
    runs = [('random', chosen['random']), ('twin', chosen['random'])]
    if chosen['twin'] != chosen['random']:
      runs.append(('twin', chosen['twin']))
    test = list(self.tier['test_seeds'])
    specs = [arm_fields(pair, arm, value) for arm, value in runs]
    start = time.perf_counter()
    out, tables = self.train(epochs, specs, test, final_test=True)
    n = len(test)
    results = []
    for i, ((arm, value), (method, fields)) in enumerate(zip(runs, specs)):
      rows = slice(i * n, (i + 1) * n)
      every = max(1, tables.shape[1] // 1000)
      results.append({
          'arm': arm, 'level': value, 'method': method, 'fields': fields,
          'test_accuracy': out['final_test_accuracy'][rows].tolist(),
          'validation_accuracy': out['validation_accuracy'][rows, -1].tolist(),
          'train_loss': out['train_loss'][rows, -1].tolist(),
          'mean_rate': float(tables[rows].mean()),
          'learning_rate_seed0': tables[i * n, ::every].tolist(),
          'reproduce': reproduce(self.tier, pair, arm, epochs, value)})
    return {'runs': results, 'run_epochs': epochs * len(specs) * n,
            'seconds': time.perf_counter() - start}

  def run_pair(self, pair: str, epochs: int) -> dict:
    """One pair at one budget: grid, choices, test seeds, comparisons."""
    grid, spent = self.tune(pair, epochs)
    levels = [point['level'] for point in grid]
    chosen = {arm: levels[best_index(_means([p[arm] for p in grid]))]
              for arm in ARMS}
    final = self.cell(
        f'{epochs}/{pair}/final/{chosen["random"]:g},{chosen["twin"]:g}',
        lambda: self.final(pair, epochs, chosen))
    # The plan counted the most a grid without extensions and the finals
    # take: the bar's total becomes what they took.
    self.bar.total += spent + final['run_epochs'] - planned_run_epochs(
        self.tier, epochs)
    self.bar.refresh()
    runs = {(r['arm'], r['level']): r for r in final['runs']}
    random = runs['random', chosen['random']]['test_accuracy']
    return {
        'random': pair, 'twin': TWINS[pair], 'grid': grid, 'chosen': chosen,
        'twin_fields': arm_fields(pair, 'twin', 1.0)[1],
        'curve': [{'level': p['level'], **paired(p['random'], p['twin'])}
                  for p in grid],
        'final': final['runs'],
        'primary': paired(random, runs['twin', chosen['random']][
            'test_accuracy']),
        'own_optima': paired(random, runs['twin', chosen['twin']][
            'test_accuracy'])}


def planned_run_epochs(tier: dict, epochs: int) -> int:
  """The most run-epochs of one pair at `epochs` without extensions: the
  coarse grid and two fine levels per arm, both arms on the tuning seeds,
  three final runs on the test seeds."""
  levels = len(tier['coarse_steps']) + 4
  return epochs * (2 * levels * len(tier['tuning_seeds'])
                   + 3 * len(tier['test_seeds']))


def plan(tier: dict, pairs: list[str], speed: dict,
         steps_per_epoch: int, batch_size: int) -> dict:
  """The run-epochs (`planned_run_epochs`), programs and minutes of the
  protocol at the measured `speed`."""
  run_epochs = len(pairs) * sum(planned_run_epochs(tier, epochs)
                                for epochs in tier['budgets'])
  programs = len(pairs) * len(tier['budgets']) * 3
  seconds = (run_epochs * (steps_per_epoch * batch_size / speed['images_per_s']
                           + speed['evaluation_s'])
             + programs * speed['compile_s'])
  return {'run_epochs': run_epochs, 'programs': programs,
          'minutes': seconds / 60}


def measure_speed(twins: Twins, num_runs: int, steps: int) -> dict:
  """A timing run: `num_runs` vmapped runs for `steps` steps, twice (the
  first compiles), then one validation pass of each."""
  epochs = twins.tier['budgets'][0]
  runner = twins.runner(epochs)
  seed_list = list(range(num_runs))
  table = np.full(epochs * twins.steps_per_epoch, 1e-3, np.float32)
  carry, keys = runner.init(seed_list, [table] * num_runs)
  rows = runner.rows(seed_list, 0)[:, :steps]
  times = []
  for _ in range(2):
    start = time.perf_counter()
    carry, _ = runner.train_epoch(carry, keys, rows)
    jax.block_until_ready(carry)
    times.append(time.perf_counter() - start)
  runner.evaluate(carry, runner.tuned_on)
  start = time.perf_counter()
  jax.block_until_ready(runner.evaluate(carry, runner.tuned_on))
  evaluation = time.perf_counter() - start
  return {'images_per_s': num_runs * steps * runner.config.batch_size
                          / times[1],
          'compile_s': times[0] - times[1],
          'evaluation_s': evaluation / num_runs, 'num_runs': num_runs,
          'steps': steps}


def summarize(budgets: dict) -> dict:
  """The primary family, Holm-corrected: name -> its comparison."""
  family = {f'{epochs}/{pair}': r['primary']
            for epochs, results in budgets.items()
            for pair, r in results.items()}
  rejected = study.holm({k: d['p'] for k, d in family.items()}, ALPHA)
  return {k: {**d, 'holm': rejected[k]} for k, d in family.items()}


def _points(d: dict) -> str:
  low, high = np.multiply(100, d['ci95'])
  return f'{100 * d["mean"]:+.2f} [{low:+.2f}, {high:+.2f}]'


def print_tables(budgets: dict, primary: dict) -> None:
  """The primary family, and each arm at its own level."""
  rows, own = [], []
  for epochs, results in budgets.items():
    for pair, r in results.items():
      runs = {(f['arm'], f['level']): f for f in r['final']}
      c, t = r['chosen']['random'], r['chosen']['twin']
      d = primary[f'{epochs}/{pair}']
      mean = {key: f'{100 * np.mean(f["test_accuracy"]):.2f}'
              for key, f in runs.items()}
      rows.append([f'{pair} - {r["twin"]}', epochs, f'{c:g}',
                   mean['random', c], mean['twin', c], _points(d),
                   f'{100 * d["half_width"]:.2f}', f'{d["p"]:.3g}',
                   'yes' if d['holm'] else 'no'])
      own.append([f'{pair} - {r["twin"]}', epochs, f'{c:g}',
                  f'{t:g}', mean['twin', t],
                  _points(r['own_optima'])])
  common.print_table(
      ['pair', 'epochs', 'level c', 'random acc %', 'twin at c acc %',
       'difference, points [95% CI]', 'half-width', 'p',
       f'Holm ({ALPHA})'], rows,
      title='Primary: the random arm at its level c minus its twin at the '
            'same mean rate (test seeds, paired)')
  common.print_table(
      ['pair', 'epochs', 'random level', 'twin level', 'twin acc %',
       'difference, points [95% CI]'], own,
      title='Secondary: each arm at its own level')


def plot(budgets: dict, settings: dict):
  """Per pair and budget: the draw's effect against the level (validation,
  tuning seeds) with the test seeds' differences; both arms' curves."""
  pairs = list(next(iter(budgets.values())))
  fig, axes = plt.subplots(2 * len(pairs), len(budgets), squeeze=False,
                           figsize=(7 * len(budgets), 4.5 * len(pairs)))
  for column, (epochs, results) in enumerate(budgets.items()):
    for row, (pair, r) in enumerate(results.items()):
      levels = [p['level'] for p in r['grid']]
      means = {arm: 100 * _means([p[arm] for p in r['grid']]) for arm in ARMS}
      near = np.minimum(means['random'], means['twin']) > max(
          means['random'].max(), means['twin'].max()) - 5
      ax = axes[2 * row, column]
      curve = r['curve']
      ax.errorbar(levels, [100 * d['mean'] for d in curve], yerr=np.abs(
          np.multiply(100, [d['ci95'] for d in curve]).T
          - [100 * d['mean'] for d in curve]), fmt='o-', capsize=3, ms=3,
                  label='validation, tuning seeds (95% CI)')
      for d, marker, label in ((r['primary'], 's', 'test: twin at c'),
                               (r['own_optima'], 'D', 'test: twin at its own')):
        ax.errorbar(r['chosen']['random'], 100 * d['mean'], fmt=marker,
                    yerr=[[100 * (d['mean'] - d['ci95'][0])],
                          [100 * (d['ci95'][1] - d['mean'])]], capsize=4,
                    label=label)
      ax.axhline(0, color='0.5', lw=0.8)
      if near.any():
        shown = [100 * b for d, keep in zip(curve, near) if keep
                 for b in d['ci95']]
        ax.set_ylim(min(shown + [-0.5]) - 0.2, max(shown + [0.5]) + 0.2)
      ax.set(xscale='log', xlabel='level c', ylabel='random - twin, points',
             title=f'{pair} - {r["twin"]}, {epochs} epochs: the draw')
      ax.legend(fontsize=7)
      ax = axes[2 * row + 1, column]
      for arm, style in zip(ARMS, ('o-', 's--')):
        name = pair if arm == 'random' else f'{r["twin"]}, its twin'
        ax.plot(levels, means[arm], style, ms=3, label=name)
        ax.axvline(r['chosen'][arm], ls=':', color='C0' if arm == 'random'
                   else 'C1')
      if near.any():
        top = max(means['random'].max(), means['twin'].max())
        ax.set_ylim(top - 5, top + 0.5)
      ax.set(xscale='log', xlabel='level c',
             ylabel='validation accuracy % (tuning seeds)',
             title=f'{epochs} epochs: the arms (dotted: chosen)')
      ax.legend(fontsize=7)
  for ax in axes.flat:
    ax.grid(alpha=0.3)
  fig.suptitle(f'{settings["model"]} on {settings["dataset"]}: random '
               f'schedules against their twins at the same mean rate, '
               f'{len(settings["test_seeds"])} test seeds', fontsize=12)
  fig.tight_layout()
  return fig


def _parse_args():
  """common.parse_args; a bad command line is its one message line."""
  err = io.StringIO()
  try:
    with contextlib.redirect_stderr(err):
      return common.parse_args(__doc__, **FLAGS)
  except SystemExit as e:
    if e.code:
      lines = err.getvalue().strip().splitlines()
      print(lines[-1] if lines else 'error: bad command line',
            file=sys.stderr)
    raise


def _exit(message: str, status: int):
  print(message, file=sys.stderr, flush=True)
  sys.exit(status)


def main():
  args = _parse_args()
  tier = dict(TIERS[args.tier], **(QUICK if args.quick else {}))
  tier['data_dir'] = args.data_dir
  pairs = list(TWINS)
  if args.pairs:
    pairs = [p.strip() for p in args.pairs.split(',') if p.strip()]
    if unknown := [p for p in pairs if p not in TWINS]:
      _exit(f'error: unknown pairs {unknown}; choose from '
            f'{", ".join(TWINS)}.', 2)
  # Each tier's results and cells are its own, and --quick's: none replaces
  # another's.
  name = NAME + (f'_{args.tier}' if args.tier != 'mlp' else '') + (
      '_quick' if args.quick else '')
  resume = common.command_line() + (
      '' if any(a.startswith('--out') for a in sys.argv[1:])
      else f' --out={args.out}')
  common.catch_signals()
  twins = None
  try:
    try:
      twins = Twins(args, tier, name)
    except errors.ConfigError as e:
      _exit(f'error: {e}'.replace('--config.data_dir', '--data_dir'), 2)
    run(args, tier, pairs, twins, name)
  except KeyboardInterrupt as e:
    status = 128 + getattr(e, 'signum', signal.SIGINT)
    if twins is not None and twins.bar is not None:
      twins.bar.close()
    # What the file holds: a signal can stop the write of the last cell.
    cells = len(twins.saved()) if twins is not None else 0
    saved = (f'{cells} cells saved in {twins.partial}' if cells else
             'nothing saved yet')
    _exit(f'interrupted: {saved} (the cell in progress is lost); resume '
          f'with: {resume}', status)


def run(args, tier: dict, pairs: list[str], twins: Twins, name: str):
  """The protocol, after the timing run and the plan."""
  size = len(twins.dataset.train)
  batch = twins.reference.batch_size
  print(f'{tier["model"]} on {tier["dataset"]}: {size} training, '
        f'{len(twins.dataset.validation)} validation, '
        f'{len(twins.dataset.test)} test images; budgets {tier["budgets"]} '
        f'epochs of {twins.steps_per_epoch} steps.', flush=True)
  if twins.cells:
    print(f'Resuming: {len(twins.cells)} cells done ({twins.partial}).',
          flush=True)
  speed = measure_speed(
      twins, 2 * len(tier['coarse_steps']) * len(tier['tuning_seeds']),
      min(40, twins.steps_per_epoch))
  planned = plan(tier, pairs, speed, twins.steps_per_epoch, batch)
  print(f'Plan: at most {planned["run_epochs"]:,} run-epochs before any '
        f'extension in {planned["programs"]} programs; at '
        f'{speed["images_per_s"]:,.0f} images/s (timing run), '
        f'{1e3 * speed["evaluation_s"]:.0f} ms per validation pass and '
        f'{speed["compile_s"]:.0f} s per compilation, about '
        f'{planned["minutes"]:.0f} minutes.', flush=True)
  done = sum(c.get('run_epochs', 0) for c in twins.cells.values())
  twins.bar = tqdm.tqdm(total=planned['run_epochs'], initial=done,
                        unit='run-epoch', desc='twins', file=sys.stderr,
                        dynamic_ncols=True)
  start = time.perf_counter()
  budgets = {}
  for epochs in tier['budgets']:
    budgets[epochs] = {}
    for pair in pairs:
      r = budgets[epochs][pair] = twins.run_pair(pair, epochs)
      twins.bar.write(
          f'{epochs} epochs, {pair} - {r["twin"]}: levels '
          f'{r["chosen"]["random"]:g} and {r["chosen"]["twin"]:g}, the draw '
          f'at the same mean rate {_points(r["primary"])} points')
  twins.bar.close()
  primary = summarize(budgets)
  print_tables(budgets, primary)
  settings = {
      **study.run_settings(tier, twins.reference, twins),
      'budgets': list(tier['budgets']),
      'twins': TWINS, 'min_ratio': MIN_RATIO,
      'twin_fields_over_level': TWIN_FIELDS,
      'grid': f'levels {tier["center"]} x 2^k, k in '
              f'{list(tier["coarse_steps"])}, extended past a best or tied '
              f'edge (at most {MAX_EXTENSIONS} times), refined to steps of '
              f'2^(1/2) around each arm\'s best; {LEVEL_DIGITS} significant '
              'digits',
      'rates': 'each run steps at the rates of its reproduce command\'s '
               'schedule, evaluated one step at a time before training',
      'optimizer': 'plain SGD (no momentum, no weight decay)',
      'speed': speed, 'plan': planned, 'command': common.command_line(),
      'commit': common.CODE[0],
      'seconds': time.perf_counter() - start}
  common.finish(name, {
      'hypotheses': {**HYPOTHESES, 'pairs': {p: TWINS[p] for p in pairs},
                     'budgets': list(tier['budgets'])},
      'settings': settings, 'primary': primary,
      'budgets': {str(e): r for e, r in budgets.items()}},
                plot(budgets, settings), args)
  twins.partial.unlink(missing_ok=True)


if __name__ == '__main__':
  main()
