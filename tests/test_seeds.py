"""train/seeds.py: S seeds vmapped and scanned are S runs of the app.

The runner is checked against `train_and_evaluate` itself (rates, first
batches, parameters after the epoch's few steps, test accuracy) and against
PLRS draws computed directly from each seed's key, so that a seed mixed up
with another, another data order or another initialisation fails.
"""

import json

import jax
import numpy as np
import optax
import pytest

import float_tolerance
import plrs_jax
from train import engine
from train import input_pipeline
from train import seeds
from train import train
from train.configs import default

# 1438 digits at batch 288: an epoch of 4 steps, "a few" in the sense of
# float_tolerance (at most 5 steps of reassociation error).
SETTINGS = dict(batch_size=288, num_epochs=1, num_devices=1,
                log_every_steps=1, progress=False)


def _config():
  config = default.get_config()
  for field, value in SETTINGS.items():
    setattr(config, field, value)
  # A smooth activation, so that the runs can be compared to float tolerance
  # (see float_tolerance: with ReLU they may differ by a flipped unit).
  config.model_kwargs.act = float_tolerance.SMOOTH_ACTIVATION
  return config


@pytest.fixture(scope='module')
def app_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('app')
  result = train.train_and_evaluate(_config(), str(workdir))
  records = [json.loads(line) for line in
             (workdir / 'metrics.jsonl').read_text().splitlines()]
  return result, records


@pytest.fixture(scope='module')
def runner_run():
  runner = seeds.SeedRunner(_config())
  out = runner.run([0, 1])
  return runner, out


def test_same_first_batches_as_the_app(runner_run):
  runner, _ = runner_run
  for seed in (0, 1):
    first = next(input_pipeline.train_batches(
        runner.dataset, global_batch_size=288,
        seed=engine.run_keys(seed).data_seed, start_step=0, num_steps=4))
    rows = np.asarray(runner.rows([seed], 0))[0, 0]
    np.testing.assert_array_equal(
        np.stack([runner.dataset.train[int(i)]['image'] for i in rows]),
        first['image'])
    np.testing.assert_array_equal(
        [runner.dataset.train[int(i)]['label'] for i in rows], first['label'])


def test_same_rates_as_the_app_and_each_seed_its_own(app_run, runner_run):
  _, records = app_run
  _, out = runner_run
  logged = [r['lr'] for r in records if 'lr' in r]
  np.testing.assert_allclose(out['lr'][0], logged, rtol=1e-6)
  for seed in (0, 1):
    # PLRS's draws from the seed's schedule key, computed directly.
    schedule = plrs_jax.plrs_schedule(engine.run_keys(seed).schedule, 0.07,
                                      0.1)
    np.testing.assert_allclose(out['lr'][seed],
                               [schedule(t) for t in range(4)], rtol=1e-6)
  assert not np.allclose(out['lr'][0], out['lr'][1])


def test_same_parameters_and_accuracy_as_the_app(app_run, runner_run):
  result, records = app_run
  runner, out = runner_run
  initial = engine.create_train_state(
      engine.run_keys(0).init, runner.model, runner.dataset.image_shape,
      optax.sgd(0.1))
  seed0 = jax.tree.map(lambda x: x[0], runner.final)
  float_tolerance.assert_same_training(seed0['params'], result.state.params,
                                       initial.params)
  float_tolerance.assert_same_training(
      seed0['batch_stats'], result.state.batch_stats, initial.batch_stats)
  epoch = [r for r in records if 'epoch' in r][-1]
  # An accuracy may flip one borderline example of the 359.
  np.testing.assert_allclose(out['test_accuracy'][0, -1],
                             epoch['test_accuracy'], atol=1.01 / 359, rtol=0)
  np.testing.assert_allclose(out['train_loss'][0, -1], epoch['train_loss'],
                             rtol=float_tolerance.RTOL)
  # The other seed trained differently.
  assert not np.allclose(out['train_loss'][1], out['train_loss'][0])


def test_vmapped_seeds_equal_sequential_runs(runner_run):
  runner, together = runner_run
  alone = seeds.train_seeds(runner.config, [1], dataset=runner.dataset)
  np.testing.assert_array_equal(together['lr'][1], alone['lr'][0])
  np.testing.assert_allclose(together['train_loss'][1],
                             alone['train_loss'][0],
                             rtol=float_tolerance.RTOL)


def test_mlr_snet_seeds_measure_their_own_gamma_and_take_the_apps_rates(
    tmp_path):
  """Each seed's initial model sets its gamma, and its rates are the app's
  for that seed (the MLP: no BatchNorm, so the initial losses differ only
  through the initialisation)."""
  config = _config()
  config.model, config.optimizer, config.weight_decay = 'mlp', 'mlr_snet', 5e-4
  logged = []
  for seed in (0, 1):
    config.seed = seed
    train.train_and_evaluate(config, str(tmp_path / str(seed)))
    logged.append([json.loads(line) for line in
                   (tmp_path / str(seed) / 'metrics.jsonl').read_text()
                   .splitlines()])
  out = seeds.train_seeds(config, [0, 1])
  for seed, records in enumerate(logged):
    (epoch,) = [r for r in records if 'epoch' in r]
    np.testing.assert_allclose(out['gamma'][seed, -1], epoch['gamma'],
                               rtol=1e-5)
    np.testing.assert_allclose(out['lr'][seed],
                               [r['lr'] for r in records if 'lr' in r],
                               rtol=1e-5)
  assert abs(out['gamma'][0, -1] - out['gamma'][1, -1]) > 1e-4
