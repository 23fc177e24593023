"""Workdirs written by older code resume with today's: those from before the
loop's state held its totals, watch and optimizer report
(tests/data/workdirs_afc6ee2, by the code of commit afc6ee2), and runs of
the app and of meta-training stopped during their second epoch
(tests/data/workdirs_47c77de), which resume to the bits the older code
logged for the whole run."""

import json
import pathlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import plrs_jax
from train import checkpoints
from train import engine
from train import input_pipeline
from train import meta_train
from train import models
from train import optimizers
from train import train
from train import workdir as workdir_lib
from train.configs import base
from train.configs import default
from train.configs import meta_train_digits

pytestmark = pytest.mark.slow

DATA = pathlib.Path(__file__).parent / 'data' / 'workdirs_afc6ee2'
STOPPED = pathlib.Path(__file__).parent / 'data' / 'workdirs_47c77de'


def assert_recorded(config, record, defaults):
  """`config` is the one `record` (a run.json) holds; fields added since are
  absent from the record, at their defaults."""
  recorded = json.loads(record.read_text())['config']
  current = json.loads(json.dumps(config.to_dict(), default=list))
  defaults = workdir_lib.flatten(defaults.to_dict())
  assert {k: v for k, v in workdir_lib.flatten(current).items()
          if k in workdir_lib.flatten(recorded) or v != defaults.get(k)
          } == workdir_lib.flatten(recorded)


def fixture_config(name, **overrides):
  """The config each workdir was written with (its make.py's flags)."""
  if name == 'sgd_momentum_resnet8':
    config = default.get_config()
    config.model_kwargs.act = 'gelu'
    config.momentum, config.train_subset = 0.9, 320
  else:
    config = default.get_config('constant')
    config.model, config.optimizer, config.momentum = 'mlp', 'autodrop', 0.9
    config.model_kwargs.hidden = (16,)
  config.num_epochs, config.progress = 1, False
  for field, value in overrides.items():
    setattr(config, field, value)
  assert_recorded(config, DATA / name / 'run.json', base.base_config())
  return config


def initial_state(config):
  """Today's train state of `config`, as train_and_evaluate builds it."""
  dataset = input_pipeline.dataset_from_config(config)
  steps_per_epoch = input_pipeline.steps_per_epoch(dataset, config.batch_size)
  keys = engine.run_keys(config.seed)
  schedule = optimizers.create_schedule(
      config.schedule, key=keys.schedule, steps_per_epoch=steps_per_epoch,
      num_steps=config.num_epochs * steps_per_epoch)
  model = models.create_model(config.model, dataset.num_classes,
                              bn_axis_name=train.AXIS, **config.model_kwargs)
  tx = optimizers.create_optimizer(config, schedule, steps_per_epoch)
  return engine.create_train_state(
      keys.init, model, dataset.image_shape, tx, train.LoopState,
      totals=train._zero_totals(), monitor=train._new_monitor())


@pytest.mark.parametrize('name', ['sgd_momentum_resnet8', 'autodrop_mlp'])
def test_an_old_checkpoint_restores_every_array_it_saved(name, tmp_path):
  workdir = shutil.copytree(DATA / name, tmp_path / name)
  state = initial_state(fixture_config(name))
  step, restored = checkpoints.restore_newest(
      workdir, state, target_for=train._target_for(state))
  # Read another way: Orbax without a target gives the saved tree as is.
  raw = ocp.StandardCheckpointer().restore(
      workdir / 'checkpoints' / str(step) / 'default')
  assert step == int(raw['state']['step']) == int(restored.step) > 0
  equal = lambda a, b: jax.tree.map(np.testing.assert_array_equal, a, b)
  equal(jax.device_get(restored.params), raw['state']['params'])
  equal(jax.device_get(restored.batch_stats), raw['state']['batch_stats'])
  equal(jax.device_get(restored.totals), raw['totals'])
  old_monitor = {k: v for k, v in restored.monitor.items()
                 if k != 'diverged_lr'}
  equal(jax.device_get(old_monitor), raw['monitor'])
  assert np.isnan(restored.monitor['diverged_lr'])
  inner = restored.opt_state.inner_state
  assert int(restored.opt_state.count) == step
  if name == 'sgd_momentum_resnet8':
    equal(jax.device_get(inner[0].trace),
          raw['state']['opt_state'][0]['trace'])
  else:
    saved = raw['state']['opt_state'][1]
    autodrop = inner[1]
    assert isinstance(autodrop, plrs_jax.AutoDropState)
    for field in autodrop._fields:
      equal(jax.device_get(getattr(autodrop, field)), saved[field])


def test_an_old_run_resumes_with_the_rates_it_would_have_had(tmp_path):
  """A PLRS run of 1 epoch, lengthened to 2: the steps after the restored
  checkpoint log PLRS's draws at their own steps."""
  name = 'sgd_momentum_resnet8'
  workdir = shutil.copytree(DATA / name, tmp_path / name)
  before = (workdir / 'metrics.jsonl').read_text()
  config = fixture_config(name)
  config.num_epochs, config.log_every_steps = 2, 1
  result = train.train_and_evaluate(config, workdir)
  lines = (workdir / 'metrics.jsonl').read_text()
  assert lines.startswith(before)
  records = [json.loads(line) for line in lines.splitlines()]
  resumed = [r for r in records[len(before.splitlines()):] if 'epoch' not in r]
  assert [r['step'] for r in resumed] == list(range(11, 21))
  plrs = plrs_jax.plrs_schedule(engine.run_keys(0).schedule, 0.07, 0.1)
  np.testing.assert_allclose([r['lr'] for r in resumed],
                             [float(plrs(r['step'] - 1)) for r in resumed],
                             rtol=1e-6)
  assert result.metrics['epoch'] == 2 and not result.metrics['stopped_early']


def test_an_old_finished_run_is_left_as_it_is(tmp_path, capsys):
  name = 'autodrop_mlp'
  workdir = shutil.copytree(DATA / name, tmp_path / name)
  before = (workdir / 'metrics.jsonl').read_text()
  result = train.train_and_evaluate(fixture_config(name), workdir)
  assert 'is finished (44 steps, 1 epoch(s)' in capsys.readouterr().out
  assert (workdir / 'metrics.jsonl').read_text() == before
  assert result.metrics['test_accuracy'] == json.loads(
      before.splitlines()[-1])['test_accuracy']


def stopped_config(config, name):
  """`config` with the flags of tests/data/workdirs_47c77de/make.py."""
  config.model, config.model_kwargs.hidden = 'mlp', (16,)
  config.num_epochs, config.progress = 2, False
  if name == 'plrs_mlp':
    config.momentum, config.batch_size = 0.9, 64
    config.log_every_steps, config.keep_checkpoints = 5, 2
  else:
    config.batch_size, config.num_meta, config.meta_batch_size = 128, 100, 100
    config.t_val, config.snapshot_epochs, config.log_every_steps = 4, (1, 2), 3
  return config


@pytest.mark.parametrize('name, done', [('plrs_mlp', 22),
                                        ('meta_train_mlp', 10)])
def test_a_stopped_run_resumes_to_the_bits_its_code_logged(name, done,
                                                           tmp_path, capsys):
  """The whole run's metrics.jsonl, written by the older code without a stop,
  is what today's code writes after resuming from the first epoch's
  checkpoint: every logged loss, rate and accuracy to the last bit."""
  workdir = shutil.copytree(STOPPED / name, tmp_path / name)
  whole = (workdir / 'metrics.jsonl').read_text()
  if name == 'plrs_mlp':
    config = stopped_config(default.get_config(), name)
    assert_recorded(config, workdir / 'run.json', base.base_config())
    # One device, as the run was written (the device count may change).
    config.num_devices = 1
    train.train_and_evaluate(config, str(workdir))
  else:
    config = stopped_config(meta_train_digits.get_config(), name)
    assert_recorded(config, workdir / 'run.json', base.meta_train_config())
    meta_train.meta_train(config, str(workdir))
  assert (f'Resuming from the checkpoint at step {done}'
          in capsys.readouterr().out)
  assert (workdir / 'metrics.jsonl').read_text() == whole
  assert len(json.loads((workdir / 'run.json').read_text())['starts']) == 2
