"""benchmarks/seeds.py (vmapped seeds) and the two programs built on it.

The vmapped trainer is checked against the same runs made one seed at a time
and against schedules and convolutions computed another way; the programs
(benchmarks/seeds_vmap.py, benchmarks/schedulers.py) run end to end with
--quick. No timing is asserted.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import float_tolerance
import plrs_jax
from benchmarks import seeds

# End-to-end: subprocesses, training runs, benchmark smoke runs.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
PLRS = {'name': 'plrs', 'min_value': 0.07, 'max_value': 0.1}
FIELDS = ('train_loss', 'train_accuracy', 'test_loss', 'test_accuracy')


@pytest.mark.parametrize('shape, kernel, strides, padding', [
    ((3, 8, 8, 1), (3, 3, 1, 16), (1, 1), ((1, 1), (1, 1))),
    ((3, 8, 8, 16), (3, 3, 16, 32), (2, 2), ((1, 1), (1, 1))),
    ((2, 7, 7, 4), (1, 1, 4, 8), (2, 2), 'VALID'),
])
def test_conv_im2col_matches_lax_conv(shape, kernel, strides, padding):
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), kernel)

  def reference(x, w):
    return jax.lax.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        precision='highest')

  def im2col(x, w):
    return seeds.conv_im2col(x, w, strides, padding, precision='highest')

  np.testing.assert_allclose(jax.jit(im2col)(x, w), reference(x, w),
                             rtol=1e-5, atol=1e-5)
  # Gradients too: training differentiates through it.
  grads = jax.jit(jax.grad(lambda x, w: jnp.sum(im2col(x, w) ** 2),
                           argnums=(0, 1)))(x, w)
  expected = jax.grad(lambda x, w: jnp.sum(reference(x, w) ** 2),
                      argnums=(0, 1))(x, w)
  for got, want in zip(grads, expected):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_vmapped_mlp_seeds_equal_sequential_runs():
  kwargs = dict(num_seeds=3, num_epochs=2, batch_size=128, model='mlp',
                seed=5)
  together = seeds.train_seeds(PLRS, **kwargs)
  apart = seeds.train_seeds(PLRS, sequential=True, **kwargs)
  # The two programs sum in another order (see float_tolerance): losses are
  # smooth in the parameters and move by about their relative error, 1e-3 at
  # most; an accuracy may flip one borderline example of the 359.
  for field in FIELDS:
    assert together[field].shape == (3, 2)
    if field.endswith('accuracy'):
      np.testing.assert_allclose(together[field], apart[field], rtol=0,
                                 atol=1.01 / 359, err_msg=field)
    else:
      np.testing.assert_allclose(together[field], apart[field],
                                 rtol=float_tolerance.RTOL, err_msg=field)
  np.testing.assert_array_equal(together['learning_rate'],
                                apart['learning_rate'])
  # Different seeds trained differently (nothing shared by mistake).
  assert len({round(float(v), 6) for v in together['train_loss'][:, -1]}) == 3


def test_vmapped_resnet_seeds_equal_sequential_steps_and_own_schedules():
  # BatchNorm's statistics are per seed under vmap. One epoch of two steps
  # of 480: short, so that float reassociation in the batched products
  # cannot grow into visible differences; evaluation is covered above.
  trainer = seeds.SeedTrainer(PLRS, num_epochs=1, batch_size=480,
                              model='resnet8')
  together, metrics = trainer.train_epoch(
      trainer.init(jnp.arange(3, dtype=jnp.int32)), jnp.int32(0))
  for s in range(3):
    start = trainer.init(jnp.array([s], jnp.int32))
    # train_epoch donates its input: train a copy, keep `start`.
    alone, alone_metrics = trainer.train_epoch(jax.tree.map(jnp.copy, start),
                                               jnp.int32(0))
    own = jax.tree.map(lambda x, s=s: x[s:s + 1], together)
    for name in ('params', 'batch_stats'):
      float_tolerance.assert_same_training(
          getattr(own, name), getattr(alone, name), getattr(start, name))
    np.testing.assert_allclose(metrics['train_loss'][s],
                               alone_metrics['train_loss'][0], rtol=1e-5)
    # The seed's rates are its own PLRS draws, computed here directly: the
    # schedule key of `python -m train` with config.seed = s, step by step.
    key = jax.random.split(jax.random.key(s), 4)[0]
    schedule = plrs_jax.plrs_schedule(key, 0.07, 0.1)
    expected = [float(schedule(t)) for t in range(trainer.steps_per_epoch)]
    np.testing.assert_allclose(metrics['learning_rate'][s], expected,
                               rtol=1e-6)
    np.testing.assert_array_equal(alone_metrics['learning_rate'][0],
                                  metrics['learning_rate'][s])


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
  counts = results['config']['seed_counts']
  for entry in results['models'].values():
    assert [r['num_seeds'] for r in entry['by_seeds']] == counts
    for row in entry['by_seeds']:
      assert row['vmapped_examples_per_s'] > 0
      assert row['sequential_examples_per_s'] > 0
      assert np.isclose(row['ratio'], row['vmapped_examples_per_s']
                        / row['sequential_examples_per_s'])
    assert entry['step_flops_per_seed'] > 0
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
