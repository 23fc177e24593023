"""The programs built on the multi-seed runner, end to end with --quick.

benchmarks/seeds_vmap.py and benchmarks/schedulers.py (both of its modes);
the runner itself is checked in tests/test_seeds.py. No timing is asserted.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest


# End-to-end: subprocesses, training runs, benchmark smoke runs.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]


# The three programs, each run once with --quick. They are started together
# in the background before the first test of this module, so that their
# (mostly single-threaded) compilation overlaps with each other and with the
# in-process tests; the tests below wait for their own program.
PROGRAMS = {
    'seeds_vmap': ['benchmarks.seeds_vmap'],
    'schedulers': ['benchmarks.schedulers'],
    # Two runs of train_and_evaluate (~20 s each, mostly compilation): one
    # schedule, two seeds.
    'schedulers_config': [
        'benchmarks.schedulers', '--config=train/configs/default.py',
        '--num_epochs=1', '--num_seeds=2', '--schedules=plrs'],
}


@pytest.fixture(scope='module', autouse=True)
def programs(tmp_path_factory):
  started = {}
  for name, argv in PROGRAMS.items():
    out = tmp_path_factory.mktemp(name)
    log = (out / 'stdout.txt').open('w'), (out / 'stderr.txt').open('w')
    process = subprocess.Popen(
        [sys.executable, '-m', *argv, '--quick', f'--out={out}'], cwd=REPO,
        stdout=log[0], stderr=log[1], text=True,
        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
    started[name] = (process, out, log)
  yield started
  for process, _, log in started.values():
    if process.poll() is None:
      process.kill()
      process.wait()
    for f in log:
      f.close()


def _finish(programs, name):
  """Waits for a program; returns its stdout and output directory."""
  process, out, _ = programs[name]
  process.wait(timeout=600)
  stderr = (out / 'stderr.txt').read_text()
  assert process.returncode == 0, stderr[-3000:]
  return (out / 'stdout.txt').read_text(), out


def test_seeds_vmap_quick(programs):
  stdout, out = _finish(programs, 'seeds_vmap')
  results = json.loads((out / 'seeds_vmap.json').read_text())
  counts = results['seed_counts']
  for rows in results['models'].values():
    assert [r['num_seeds'] for r in rows] == counts
    for row in rows:
      assert row['vmapped_examples_per_s'] > 0
      assert row['sequential_examples_per_s'] > 0
      assert np.isclose(row['ratio'], row['vmapped_examples_per_s']
                        / row['sequential_examples_per_s'])
  assert results['environment']['machine']['cpu_count'] >= 1
  assert (out / 'seeds_vmap.png').stat().st_size > 10_000
  assert '| model | S |' in stdout


def _check_schedule_results(results, names, num_seeds, num_epochs):
  assert set(names) <= set(results)
  for name in names:
    r = results[name]
    assert np.shape(r['test_accuracy']) == (num_seeds,)
    assert np.shape(r['best_test_accuracy']) == (num_seeds,)
    assert np.shape(r['train_loss']) == (num_seeds, num_epochs)
    assert np.shape(r['test_accuracy_curve']) == (num_seeds, num_epochs)
    np.testing.assert_allclose(r['test_accuracy'],
                               np.array(r['test_accuracy_curve'])[:, -1])
    np.testing.assert_allclose(r['best_test_accuracy'],
                               np.max(r['test_accuracy_curve'], axis=1))
    assert all(0 <= a <= 1 for a in r['test_accuracy'])
  assert 'versions' in results['environment']


def test_schedulers_quick_on_digits(programs):
  stdout, out = _finish(programs, 'schedulers')
  results = json.loads((out / 'schedulers.json').read_text())
  settings = results['settings']
  _check_schedule_results(results, ['plrs', 'knee'], len(settings['seeds']),
                          settings['num_epochs'])
  # PLRS ran on the range test's bounds.
  bounds = settings['range_test']
  rates = np.array(results['plrs']['learning_rate_seed0'])
  assert bounds['suggested_min'] <= rates.min() <= rates.max() <= (
      bounds['suggested_max'])
  assert (out / 'schedulers.png').stat().st_size > 10_000
  assert 'final test acc % mean (SD)' in stdout


def test_schedulers_config_path_runs_train_and_evaluate(programs):
  _, out = _finish(programs, 'schedulers_config')
  results = json.loads((out / 'schedulers_default.json').read_text())
  _check_schedule_results(results, ['plrs'], 2, 1)
  assert results['settings']['seeds'] == [0, 1]
  # The numbers are those each run logged, and the seeds are distinct runs.
  runs = out / 'schedulers_runs_default' / 'plrs'
  rates = []
  for i, seed in enumerate((0, 1)):
    records = [json.loads(line) for line in
               (runs / f'seed_{seed}' / 'metrics.jsonl').read_text()
               .splitlines()]
    final = [r for r in records if 'epoch' in r][-1]
    assert results['plrs']['test_accuracy'][i] == final['test_accuracy']
    assert results['plrs']['train_loss'][i] == [final['train_loss']]
    rates.append([r['lr'] for r in records if 'lr' in r])
  assert rates[0] != rates[1]
  assert (out / 'schedulers_default.png').stat().st_size > 10_000
