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

import test_fashion_mnist


# End-to-end: subprocesses, training runs, benchmark smoke runs.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]


# The three programs, each run once with --quick. They are started together
# in the background before the first test of this module, so that their
# (mostly single-threaded) compilation overlaps with each other and with the
# in-process tests; the tests below wait for their own program.
PROGRAMS = {
    'seeds_vmap': ['benchmarks.seeds_vmap'],
    # Every method on Fashion-MNIST files of 100 + 20 random images (the
    # digits path is the same code with another dataset).
    'schedulers': ['benchmarks.schedulers', '--dataset=fashion_mnist',
                   '--data_dir={fashion}', '--batch_size=20',
                   '--train_subset=0'],
    # Two runs of train_and_evaluate (~20 s each, mostly compilation): one
    # schedule, two seeds.
    'schedulers_config': [
        'benchmarks.schedulers', '--config=train/configs/default.py',
        '--num_epochs=1', '--num_seeds=2', '--schedules=plrs'],
}


@pytest.fixture(scope='module', autouse=True)
def programs(tmp_path_factory):
  started = {}
  fashion = tmp_path_factory.mktemp('fashion')
  test_fashion_mnist.write_fashion_mnist(fashion)
  for name, argv in PROGRAMS.items():
    argv = [arg.format(fashion=fashion) for arg in argv]
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
    assert np.shape(r['train_loss']) == (num_seeds,)
    assert np.shape(r['train_loss_curve']) == (num_seeds, num_epochs)
    assert np.shape(r['test_accuracy_curve']) == (num_seeds, num_epochs)
    np.testing.assert_allclose(r['test_accuracy'],
                               np.array(r['test_accuracy_curve'])[:, -1])
    np.testing.assert_allclose(r['best_test_accuracy'],
                               np.max(r['test_accuracy_curve'], axis=1))
    assert all(0 <= a <= 1 for a in r['test_accuracy'])
  assert 'versions' in results['environment']


def test_schedulers_quick_runs_every_method_paired(programs):
  stdout, out = _finish(programs, 'schedulers')
  results = json.loads((out / 'schedulers_fashion_mnist.json').read_text())
  settings = results['settings']
  names = list(settings['methods'])
  assert {'plrs', 'plrs_default', 'constant', 'knee', 'two_regime',
          'autodrop', 'autodrop_recipe', 'mlr_snet',
          'mlr_snet_snapshots'} <= set(names)
  _check_schedule_results(results, names, len(settings['seeds']),
                          settings['num_epochs'])
  # PLRS ran on the range test's bounds; beta was measured again at the end.
  bounds = settings['range_test']
  rates = np.array(results['plrs']['learning_rate_seed0'])
  assert bounds['suggested_min'] <= rates.min() <= rates.max() <= (
      bounds['suggested_max'])
  assert np.isfinite(results['plrs']['beta_at_end_seed0'])
  # The paired differences, recomputed from the per-seed accuracies.
  plrs = np.array(results['plrs']['test_accuracy'])
  for name in names[1:]:
    difference = 100 * np.mean(plrs - np.array(results[name]['test_accuracy']))
    assert f'| {name} | {difference:+.2f} [' in stdout
  assert not (out / 'schedulers_fashion_mnist.partial.json').exists()
  assert (out / 'schedulers_fashion_mnist.png').stat().st_size > 10_000
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
    assert results['plrs']['train_loss'][i] == final['train_loss']
    rates.append([r['lr'] for r in records if 'lr' in r])
  assert rates[0] != rates[1]
  assert (out / 'schedulers_default.png').stat().st_size > 10_000


def test_schedulers_resume_what_an_interrupted_run_finished(tmp_path):
  """A method in OUT/NAME.partial.json is not trained again."""
  fashion = tmp_path / 'fashion'
  fashion.mkdir()
  test_fashion_mnist.write_fashion_mnist(fashion)
  key = dict(dataset='fashion_mnist', model='mlp', num_epochs=3,
             batch_size=20, train_subset=0, num_seeds=2, seed=0, quick=True)
  # Numbers no training would give: taken from the file, or the test fails.
  finished = {'test_accuracy': [0.125, 0.25],
              'best_test_accuracy': [0.5, 0.75],
              'train_loss': [9.0, 8.0],
              'train_loss_curve': [[9.9, 9.5, 9.0], [8.9, 8.5, 8.0]],
              'test_accuracy_curve': [[0.1, 0.5, 0.125], [0.1, 0.75, 0.25]],
              'test_loss': [[3.0] * 3, [3.0] * 3],
              'learning_rate_seed0': [0.1] * 10}
  bounds = {'suggested_min': 0.07, 'suggested_max': 0.1, 'min_loss_lr': 1.0,
            'diverged_step': None, 'beta': 5.0, 'check': ''}
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'schedulers_fashion_mnist.partial.json').write_text(json.dumps(
      {'key': key, 'range_test': bounds, 'results': {'constant': finished}}))
  done = subprocess.run(
      [sys.executable, '-m', 'benchmarks.schedulers', '--quick',
       '--dataset=fashion_mnist', f'--data_dir={fashion}', '--batch_size=20',
       '--train_subset=0', '--schedules=constant', f'--out={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'Resuming: constant done' in done.stdout
  results = json.loads((out / 'schedulers_fashion_mnist.json').read_text())
  assert results['constant']['test_accuracy'] == [0.125, 0.25]
  assert results['settings']['range_test']['beta'] == 5.0
