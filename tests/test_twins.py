"""benchmarks/twins.py: the twins' rates against closed forms and the app's,
the grid's rule on synthetic curves, --quick end to end with an interruption.
"""

import argparse
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from scipy import stats

from benchmarks import twins
from train import engine
from train import train
from train.configs import fashion_mnist

REPO = pathlib.Path(__file__).resolve().parents[1]
TIER = dict(twins.TIERS['mlp'], **twins.QUICK, data_dir=None)
LEVEL = 0.2828
F32 = np.finfo(np.float32).eps


@pytest.fixture(scope='module')
def program(tmp_path_factory):
  return twins.Twins(argparse.Namespace(out=tmp_path_factory.mktemp('out')),
                     TIER)


def _unit(method: str, steps: int) -> np.ndarray:
  """The envelope at peak 1, restated from warmup_decay's docstring: a 5%
  warmup from 0, then linear decay to 0 or, for wsd, the peak until the last
  20% and a linear cooldown to 0."""
  t = np.arange(steps, dtype=float)
  if method in ('constant', 'plrs'):
    return np.ones(steps)
  warmup = round(0.05 * steps)
  rate = np.where(t < warmup, t / max(warmup, 1), 1.0)
  if method.endswith('linear_decay'):
    return np.where(t < warmup, rate, (steps - t) / (steps - warmup))
  start = round(steps - 0.2 * steps)
  return np.where(t <= start, rate, 1 - (t - start) / (steps - start))


def test_the_arms_share_everything_but_the_schedule():
  # One program trains every arm: they must differ in their rates alone.
  def rest(method):
    return {k: v for k, v in fashion_mnist.get_config(method).items()
            if k != 'schedule'}
  for pair, twin in twins.TWINS.items():
    assert rest(pair) == rest(twin) == rest('plrs')
  for method in ('plrs_wsd', 'plrs_linear_decay'):
    assert fashion_mnist.get_config(method).schedule.min_ratio == 0.7
  assert twins.MIN_RATIO == 0.7 and math.isclose(twins.MEAN_RATIO, 0.85)


@pytest.mark.parametrize('pair', list(twins.TWINS))
def test_the_twin_steps_at_the_mean_of_the_random_arm(program, pair):
  epochs, seed_list = 20, list(range(20))
  steps = epochs * program.steps_per_epoch
  twin = program.rates(epochs, *twins.arm_fields(pair, 'twin', LEVEL), [0])[0]
  envelope = LEVEL * _unit(pair, steps)
  t = np.arange(steps)
  drawn = np.ones(steps, bool)
  if pair == 'plrs_wsd':  # It draws from the warmup's end to the cooldown.
    drawn = (t >= round(0.05 * steps)) & (t < round(0.8 * steps))
  # The twin: the mean of U[0.7, 1] times the envelope where the random arm
  # draws, the envelope elsewhere (float32 rounding, and a decay's
  # cancellation near its end).
  np.testing.assert_allclose(twin, np.where(drawn, 0.85, 1.0) * envelope,
                             rtol=1e-6, atol=4 * F32 * LEVEL)
  random = program.rates(epochs, *twins.arm_fields(pair, 'random', LEVEL),
                         seed_list)
  # Where it does not draw, the random arm steps at the envelope.
  np.testing.assert_allclose(
      random[:, ~drawn], np.broadcast_to(envelope, random.shape)[:, ~drawn],
      rtol=1e-6, atol=4 * F32 * LEVEL)
  slack = 4 * F32 * LEVEL
  assert np.all(random >= 0.7 * envelope - slack)
  assert np.all(random <= envelope + slack)
  drawn &= envelope > 0
  ratio = random[:, drawn] / envelope[drawn]
  # U[0.7, 1] has mean 0.85 and SD 0.3 / sqrt(12): five standard errors.
  bound = 5 * 0.3 / math.sqrt(12) / math.sqrt(ratio.size)
  assert abs(ratio.mean() - 0.85) < bound, (ratio.mean(), bound)
  if pair == 'plrs':  # The paper's draw, restated: low + u (high - low).
    low, high = np.float32(0.7 * LEVEL), np.float32(LEVEL)
    for seed in (0, 7):
      key = engine.run_keys(seed).schedule
      u = np.asarray([jax.random.uniform(jax.random.fold_in(key, step))
                      for step in range(50)])
      np.testing.assert_allclose(random[seed, :50], low + u * (high - low),
                                 rtol=1e-6)


def test_levels_and_fields_are_exact_in_the_command():
  # Half-octaves of the center, 4 digits: 0.2 x 2^(j/2).
  assert [twins.lattice(0.2, j) for j in range(-3, 4)] == [
      0.07071, 0.1, 0.1414, 0.2, 0.2828, 0.4, 0.5657]
  assert twins.arm_fields('plrs', 'random', 0.2828) == (
      'plrs', {'min_value': 0.19796, 'max_value': 0.2828})
  assert twins.arm_fields('plrs_wsd', 'twin', 0.1414) == (
      'wsd', {'peak_value': 0.1414, 'stable_value': 0.12019})
  command = twins.reproduce(TIER, 'plrs_wsd', 'twin', 2, 0.1414)
  assert '--config.schedule.peak_value=0.1414 ' in command
  assert '--config.schedule.stable_value=0.12019 ' in command
  assert '--workdir=/tmp/twins/twin0.1414_wsd_2ep_seed{seed}' in command


def _app_config(command: str, seed: int):
  """The config `python -m train` builds from `command`, logging every step."""
  from test_study import _parse  # pylint: disable=g-import-not-at-top
  config = _parse(command, seed)
  config.log_every_steps, config.num_devices = 1, 1
  config.progress = False
  return config


@pytest.mark.slow
@pytest.mark.parametrize('pair,arm', [('plrs_linear_decay', 'random'),
                                      ('plrs_wsd', 'twin')])
def test_rates_are_bit_for_bit_the_apps_with_the_command(program, tmp_path,
                                                         pair, arm):
  epochs, seed = 2, 3
  config = _app_config(twins.reproduce(TIER, pair, arm, epochs, LEVEL), seed)
  train.train_and_evaluate(config, str(tmp_path))
  logged = [json.loads(line)['lr'] for line in
            (tmp_path / 'metrics.jsonl').read_text().splitlines()
            if '"lr"' in line]
  rates = program.rates(epochs, *twins.arm_fields(pair, arm, LEVEL), [seed])
  np.testing.assert_array_equal(rates[0], np.float32(logged))


def test_next_levels_refines_to_half_octaves_and_extends_best_edges():
  levels = [0.05, 0.1, 0.2, 0.4, 0.8]
  grid = lambda *args, **kwargs: twins.next_levels(0.2, *args, **kwargs)
  # Interior best: its neighbours a factor 2^(1/2) away, 4 digits.
  assert grid(levels, [1, 2, 3, 2, 1]) == ([0.1414, 0.2828], False)
  # Best at an edge, or an edge tied with the best: one factor 2 past it.
  assert grid(levels, [1, 2, 3, 4, 5]) == ([1.6], True)
  assert grid(levels, [5, 4, 3, 2, 1]) == ([0.025], True)
  assert grid(levels, [1, 2, 5, 3, 5]) == ([1.6], True)
  assert grid(levels, [5, 2, 5, 3, 5]) == ([0.025, 1.6], True)
  # No extension left: the edge's inner neighbour only.
  assert grid(levels, [1, 2, 3, 4, 5], can_extend=False) == ([0.5657], False)
  # Neighbours already a factor 2^(1/2) away: nothing to add; a best at a
  # fine level gets none either (its neighbours are coarse levels).
  fine = [0.1, 0.1414, 0.2, 0.2828, 0.4]
  assert grid(fine, [1, 2, 3, 2, 1]) == ([], False)
  assert grid(fine, [1, 2, 3, 4, 3]) == ([], False)


class _Synthetic(twins.Twins):
  """The pair's grid on smooth curves, each arm's peaked at `peaks[arm]`;
  no data, no training: only what `tune` reads is set."""

  # pylint: disable-next=super-init-not-called
  def __init__(self, out, peaks, cells=None):
    self.args = argparse.Namespace(out=out)
    self.tier, self.key = dict(twins.TIERS['mlp']), {}
    self.partial = out / 'synthetic.partial.json'
    self.cells, self.peaks, self.calls = cells or {}, peaks, []

  def evaluate(self, pair, epochs, levels):
    self.calls.append(levels)
    curve = lambda v, peak: [0.9 - 0.01 * math.log2(v / peak) ** 2] * 4
    return {'levels': levels, 'run_epochs': 1,
            **{arm: [curve(v, peak) for v in levels]
               for arm, peak in self.peaks.items()}}


@pytest.mark.parametrize('peaks', [{'random': 0.33, 'twin': 0.21},
                                   {'random': 0.03, 'twin': 2.5}])
def test_the_grid_brackets_each_arms_peak_in_half_octaves(tmp_path, peaks):
  fake = _Synthetic(tmp_path, peaks)
  grid, _ = fake.tune('plrs', 12)
  levels = [point['level'] for point in grid]
  assert levels == sorted(levels) and {0.05, 0.1, 0.2, 0.4, 0.8} <= set(
      levels)
  for arm, peak in peaks.items():
    means = [np.mean(point[arm]) for point in grid]
    i = int(np.argmax(means))
    # The chosen level's neighbours are no farther than 2^(1/2) (its value
    # rounded to 4 digits), so it is within 2^(1/4) of the peak.
    assert 0 < i < len(levels) - 1
    assert max(levels[i + 1] / levels[i], levels[i] / levels[i - 1]) < (
        2 ** 0.5 * 1.001)
    assert abs(math.log2(levels[i] / peak)) <= 0.25 + 1e-3
  # Saved cell by cell: the same grid again evaluates nothing.
  again = _Synthetic(tmp_path, peaks, cells=fake.cells)
  assert again.tune('plrs', 12)[0] == grid and not again.calls


def test_extensions_stop_after_max_extensions(tmp_path):
  fake = _Synthetic(tmp_path, {'random': 100.0, 'twin': 0.2})
  grid, _ = fake.tune('plrs', 2)
  levels = [point['level'] for point in grid]
  assert levels[-1] == 0.8 * 2 ** twins.MAX_EXTENSIONS
  assert sum(len(c) == 1 and c[0] > 0.8 for c in fake.calls) == (
      twins.MAX_EXTENSIONS)


def _quick(out: pathlib.Path) -> list[str]:
  return [sys.executable, '-m', 'benchmarks.twins', '--quick',
          '--pairs=plrs_wsd', f'--out={out}']


ENV = {**os.environ, 'JAX_PLATFORMS': 'cpu'}


@pytest.mark.slow
def test_quick_is_interrupted_resumed_and_writes_every_cell(tmp_path):
  before = sorted((REPO / 'benchmarks' / 'results').iterdir())
  partial = tmp_path / f'{twins.NAME}_quick.partial.json'
  process = subprocess.Popen(_quick(tmp_path), cwd=REPO, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  deadline = time.monotonic() + 300
  while not partial.exists() and time.monotonic() < deadline:
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 143, stderr[-2000:]
  said = [line for line in stderr.splitlines() if 'interrupted' in line]
  assert len(said) == 1 and said[0].startswith('interrupted: ')
  saved = len(json.loads(partial.read_text())['cells'])
  assert f'{saved} cells saved in {partial}' in said[0]
  assert said[0].endswith(f'--out={tmp_path}')

  done = subprocess.run(_quick(tmp_path), cwd=REPO, env=ENV,
                        capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'Resuming: {saved} cells done' in done.stdout
  assert 'Plan: at most' in done.stdout and '| pair |' in done.stdout
  assert sorted((REPO / 'benchmarks' / 'results').iterdir()) == before
  assert not partial.exists()
  result = json.loads((tmp_path / f'{twins.NAME}_quick.json').read_text())
  assert (tmp_path / f'{twins.NAME}_quick.png').stat().st_size > 10_000
  assert set(result['budgets']) == {'1', '2'}
  assert 'Holm' in result['hypotheses']['primary']
  p_values = {}
  for epochs, cells in result['budgets'].items():
    r = cells['plrs_wsd']
    levels = [point['level'] for point in r['grid']]
    assert levels == sorted(levels)
    for arm in twins.ARMS:
      means = [np.mean(point[arm]) for point in r['grid']]
      assert r['chosen'][arm] == levels[int(np.argmax(means))]
    runs = {(f['arm'], f['level']): f for f in r['final']}
    c = r['chosen']['random']
    assert runs['twin', c]['fields'] == {
        'peak_value': c, 'stable_value': float(f'{0.85 * c:.6g}')}
    for f in r['final']:
      assert len(f['test_accuracy']) == len(twins.QUICK['test_seeds'])
      assert all(f'={v}' in f['reproduce'] for v in f['fields'].values())
    difference = (np.subtract(runs['random', c]['test_accuracy'],
                              runs['twin', c]['test_accuracy']))
    d = result['primary'][f'{epochs}/plrs_wsd']
    assert d['mean'] == pytest.approx(difference.mean(), abs=1e-12)
    if np.ptp(difference):
      test = stats.ttest_1samp(difference, 0.0)
      assert d['p'] == pytest.approx(test.pvalue)
      assert d['ci95'] == pytest.approx(list(test.confidence_interval()))
    p_values[epochs] = d['p']
  # Holm over the two: the smaller p against 0.05 / 2, then 0.05.
  small, large = sorted(p_values, key=p_values.get)
  first = p_values[small] <= 0.025
  assert result['primary'][f'{small}/plrs_wsd']['holm'] == first
  assert result['primary'][f'{large}/plrs_wsd']['holm'] == (
      first and p_values[large] <= 0.05)


@pytest.mark.slow
def test_quick_cnn_tier_runs_resnet8_end_to_end(tmp_path):
  # The GPU tier's program on CPU at --quick's sizes.
  done = subprocess.run(
      [sys.executable, '-m', 'benchmarks.twins', '--quick', '--tier=cnn',
       '--pairs=plrs', f'--out={tmp_path}'], cwd=REPO, env=ENV,
      capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(
      (tmp_path / f'{twins.NAME}_cnn_quick.json').read_text())
  assert result['settings']['model'] == 'resnet8'
  assert set(result['budgets']) == {'1', '2'}
  for cells in result['budgets'].values():
    r = cells['plrs']
    levels = [point['level'] for point in r['grid']]
    for arm in twins.ARMS:
      means = [np.mean(point[arm]) for point in r['grid']]
      assert r['chosen'][arm] == levels[int(np.argmax(means))]
    for f in r['final']:
      assert len(f['test_accuracy']) == len(twins.QUICK['test_seeds'])


@pytest.mark.slow
@pytest.mark.parametrize('flags', [['--bogus'], ['--pairs=plrs,nope'],
                                   ['--data_dir=/nonexistent/fashion']])
def test_bad_input_is_one_line_and_exit_2(tmp_path, flags):
  out = tmp_path / 'out'
  done = subprocess.run(
      [sys.executable, '-m', 'benchmarks.twins', f'--out={out}', *flags],
      cwd=REPO, env=ENV, capture_output=True, text=True)
  assert done.returncode == 2, done.stderr[-2000:]
  assert len(done.stderr.strip().splitlines()) == 1, done.stderr
  assert 'error' in done.stderr and not out.exists()
