"""Smoke tests of benchmarks/overhead.py and benchmarks/scaling.py.

Each benchmark runs with `--quick --out TMP` in a subprocess (it must start
its own JAX: scaling launches one process per simulated device count), and the
tests check what it wrote: every candidate and device count, timed every
round, finite ratios, and a steady-state loop that the transfer guard let
through. No timing is asserted: the machines are shared.
"""

import json
import math
import os
import pathlib
import subprocess
import sys
import pytest

# End-to-end: subprocesses, training runs, benchmark smoke runs.
pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run_benchmark(name: str, out: pathlib.Path) -> dict:
  """Runs `python -m benchmarks.NAME --quick --out OUT`; returns its JSON."""
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  # The smoke run checks that the programs work, not how fast the code is:
  # unoptimized XLA code halves the compile time that dominates it.
  env['XLA_FLAGS'] = '--xla_backend_optimization_level=0'
  done = subprocess.run(
      [sys.executable, '-m', f'benchmarks.{name}', '--quick', '--out',
       str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
      timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-4000:]
  assert '| ' in done.stdout  # the Markdown table
  assert (out / f'{name}.png').stat().st_size > 0
  return json.loads((out / f'{name}.json').read_text())


def _check_candidates(entry: dict, baseline: str) -> None:
  """Every candidate was timed every round, ran transfer-free, and its
  ratios to the baseline are finite and inside their intervals' range."""
  rounds = entry['rounds']
  for name, stats in entry['candidates'].items():
    assert stats['transfer_free'] is True, (name, stats['transfer_free'])
    for clock in (stats, stats['cpu']):
      assert len(clock['round_s_per_step']) == rounds
      assert all(t > 0 for t in clock['round_s_per_step'])
      assert clock['median_s_per_step'] > 0
      ratio = clock[f'ratio_vs_{baseline}']
      low, high = clock['ratio_ci95']
      assert math.isfinite(ratio) and 0 < low <= high < math.inf
      if name == baseline:
        assert ratio == low == high == 1


def test_overhead_quick(tmp_path):
  results = _run_benchmark('overhead', tmp_path)
  assert results['benchmark'] == 'overhead' and results['quick']
  assert set(results['models']) == {'mlp', 'resnet20'}
  for entry in results['models'].values():
    assert set(entry['candidates']) == {'constant', 'plrs',
                                        'inject_hyperparams'}
    _check_candidates(entry, 'constant')
    assert 1 <= entry['predicted_ratio_from_schedule_cost'] < math.inf
  schedule = results['schedule']
  for name in ('constant', 'plrs'):
    assert schedule[name]['us_per_evaluation_in_loop'] > 0
    assert len(schedule[name]['round_us_per_evaluation_in_loop']) == (
        schedule['rounds'])
  assert math.isfinite(schedule['plrs_extra_us_per_evaluation_in_loop'])


def test_scaling_quick(tmp_path):
  results = _run_benchmark('scaling', tmp_path)
  assert results['benchmark'] == 'scaling' and results['quick']
  series = results['series']['cpu']
  assert [e['devices'] for e in series] == results['device_counts'] == [1, 2]
  for entry in series:
    assert entry['global_batch'] == entry['devices'] * entry[
        'per_device_batch']
    assert set(entry['candidates']) == {'cross_replica', 'independent'}
    _check_candidates(entry, 'independent')
    assert entry['images_per_s'] > 0
    assert 0 < entry['step_time_vs_1_device'] < math.inf
  assert series[0]['step_time_vs_1_device'] == 1


def test_quick_runs_never_write_over_the_committed_results(monkeypatch):
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, 'argv', ['benchmark', '--quick'])
  quick = common.parse_args('a benchmark')
  assert quick.out.resolve() != common.RESULTS.resolve()
  assert not quick.out.resolve().is_relative_to(REPO_ROOT)
  monkeypatch.setattr(sys, 'argv', ['benchmark'])
  assert common.parse_args('a benchmark').out == common.RESULTS
  # Every benchmark takes its flags from common.parse_args.
  for path in (REPO_ROOT / 'benchmarks').glob('*.py'):
    if path.name != 'common.py':
      assert 'ArgumentParser(' not in path.read_text(), path
