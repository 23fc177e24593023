"""MLR-SNet's meta-training (train/meta_train.py): a meta step moves the rate
as the meta-gradient says, a run resumes to the uninterrupted run and logs
the net's rates, and bad input is one ConfigError before anything is
written."""

import collections
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from test_mlr_snet import numpy_cell
from test_mlr_snet import numpy_run
from train import config_validation
from train import engine
from train import input_pipeline
from train import meta_train
from train import mlr_snet_file
from train import models
from train.configs import meta_train_digits

REPO = pathlib.Path(__file__).resolve().parents[1]

# 1338 training digits at batch 128: 10 steps an epoch, a meta step every 4;
# the held-out batch is the whole held-out set (in some order).
TINY = dict(num_epochs=2, batch_size=128, num_meta=100, meta_batch_size=100,
            t_val=4, snapshot_epochs=(1, 2), log_every_steps=3,
            progress=False)


def tiny_config(**overrides):
  config = meta_train_digits.get_config()
  for field, value in {**TINY, **overrides}.items():
    setattr(config, field, value)
  return config


def read_metrics(workdir):
  return [json.loads(line) for line in
          (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()]


def cross_entropy(model, params, images, labels):
  """The training-mode loss of the model, restated with optax's."""
  logits, _ = model.apply({'params': params, 'batch_stats': {}}, images,
                          train=True, mutable=['batch_stats'])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, labels).mean()


def test_the_held_out_set_is_balanced_and_apart_from_the_training_set():
  dataset = input_pipeline.load_dataset('digits')
  rest, held = input_pipeline.hold_out(dataset, 200, seed=0)

  def examples(images, labels):
    return collections.Counter(
        image.tobytes() + bytes([label]) for image, label in zip(images,
                                                                 labels))

  whole = examples(*input_pipeline.as_arrays(dataset.train))
  trained = examples(*input_pipeline.as_arrays(rest.train))
  held_out = examples(held['image'], held['label'])
  assert trained + held_out == whole and not trained & held_out
  assert np.bincount(held['label']).tolist() == [20] * 10
  _, other = input_pipeline.hold_out(dataset, 200, seed=1)
  assert examples(other['image'], other['label']) != held_out


def test_a_meta_step_moves_the_rate_against_the_meta_gradient():
  """The held-out loss after one SGD step of the batch's gradient at rate a
  is L(a); if dL/da < 0 a larger rate helps and the step must raise the rate
  the net gives this loss, if > 0 lower it. dL/da by finite differences of
  the model's loss in float64, the rates by the numpy cell: nothing of
  mlr_snet_meta_loss. Adam's first step moves each parameter of phi by
  -lr sign(dL/dphi_i) = -lr sign(dL/da) sign(da/dphi_i): to first order the
  rate moves by -lr sign(dL/da) sum_i |da/dphi_i|. (Weight decay on phi,
  which could flip small components, is 0 here; the MLP compiles in a
  second, ResNet-8 with its BatchNorm runs in the resume test.)"""
  config = tiny_config(meta_weight_decay=0.0, model='mlp')
  run = meta_train.prepare(config)
  batch = next(input_pipeline.train_batches(
      run.dataset, global_batch_size=config.batch_size,
      seed=engine.run_keys(config.seed).data_seed, start_step=0, num_steps=1))
  before = jax.device_get(run.carry)  # The step donates the carry.
  after, meta = run.meta_step(run.carry, batch, run.held_out)
  phi_after = jax.device_get(after['phi'])

  with jax.enable_x64(True):
    model = models.create_model(config.model, 10, dtype=jnp.float64)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64),
                          before['params'])
    mean, std = np.array(run.dataset.mean), np.array(run.dataset.std)
    images = jnp.asarray((batch['image'] - mean) / std)
    held = jnp.asarray((np.asarray(run.held_out['image']) - mean) / std)
    loss, grads = jax.jit(jax.value_and_grad(
        lambda p: cross_entropy(model, p, images, batch['label'])))(params)

    @jax.jit
    def stepped_loss(rate):
      stepped = jax.tree.map(
          lambda p, g: p - rate * (g + config.weight_decay * p), params, grads)
      return cross_entropy(model, stepped, held, run.held_out['label'])

    held_out_loss = lambda rate: float(stepped_loss(rate))

    zeros = np.zeros(50)
    rate = run.gamma * numpy_cell(before['phi'], float(loss), zeros, zeros)[2]
    new_rate = run.gamma * numpy_cell(phi_after, float(loss), zeros,
                                      zeros)[2]
    eps = 1e-3
    slope = (held_out_loss(rate + eps) - held_out_loss(rate - eps)) / (2 * eps)
    # The logged meta loss is the held-out loss after the step at the old
    # rate (float32 against float64).
    np.testing.assert_allclose(meta['meta_loss'], held_out_loss(rate),
                               rtol=1e-4)
  assert abs(slope) > 1e-3
  assert np.sign(new_rate - rate) == -np.sign(slope)
  assert abs(new_rate - rate) > 1e-5


@pytest.mark.slow
def test_meta_training_resumes_to_the_uninterrupted_run(tmp_path):
  whole = meta_train.meta_train(tiny_config(), str(tmp_path / 'whole'))
  cut = tmp_path / 'cut'
  shutil.copytree(tmp_path / 'whole', cut)
  # As if stopped during the second epoch: its checkpoint and net are gone.
  shutil.rmtree(cut / 'checkpoints' / '20')
  (cut / 'mlr_snet.npz').unlink()
  resumed = meta_train.meta_train(tiny_config(), str(cut))
  jax.tree.map(np.testing.assert_array_equal, resumed.carry, whole.carry)
  assert (cut / 'metrics.jsonl').read_text() == (
      tmp_path / 'whole' / 'metrics.jsonl').read_text()

  records = read_metrics(cut)
  steps = [r for r in records if 'epoch' not in r]
  epochs = [r for r in records if 'epoch' in r]
  assert [r['step'] for r in steps] == list(range(1, 21))
  assert [r['step'] for r in steps if 'meta_loss' in r] == [4, 8, 12, 16, 20]
  assert [r['epoch'] for r in epochs] == [1, 2]
  # Steps 1-3 run the initial net (phi's first meta step is at step 4): the
  # logged rates are that net's rates on the logged losses.
  initial = jax.device_get(meta_train.prepare(tiny_config()).carry)
  rates, _, _ = numpy_run([initial['phi']] * 3,
                          [r['train_loss'] for r in steps[:3]],
                          [epochs[0]['gamma']] * 3)
  np.testing.assert_allclose([r['lr'] for r in steps[:3]], rates, atol=2e-5)
  # The snapshots are phi after epochs 1 and 2, and phi moved.
  nets = mlr_snet_file.load(cut)
  assert nets.epochs == [1, 2]
  jax.tree.map(np.testing.assert_array_equal, nets.snapshots[1],
               jax.device_get(whole.carry['phi']))
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), nets.snapshots[1],
                       nets.snapshots[0])
  assert max(jax.tree.leaves(moved)) > 1e-4
  assert (cut / 'meta_train.png').stat().st_size > 10_000
  # Run again, a finished run trains no further.
  again = meta_train.meta_train(tiny_config(log_every_steps=7), str(cut))
  jax.tree.map(np.testing.assert_array_equal, again.carry, whole.carry)
  assert again.metrics['epoch'] == 2 and read_metrics(cut) == records


@pytest.mark.parametrize('overrides, pattern', [
    (dict(snapshot_epochs=(1, 3)),
     r'config.snapshot_epochs=\(1, 3\) must be epochs of the run, 1 to '
     r'config.num_epochs=2'),
    (dict(snapshot_epochs=(2, 1)), r'config.snapshot_epochs=\(2, 1\)'),
    (dict(num_meta=105), r'its size must be a positive multiple of 10, got '
                         r'105'),
    (dict(num_meta=50), r'config.meta_batch_size=100 is larger than the '
                        r'held-out set, config.num_meta=50'),
    (dict(t_val=0), r'config.t_val=0 must be an integer >= 1'),
    (dict(meta_learning_rate=0.0), r'config.meta_learning_rate=0.0 must be a '
                                   r'finite number > 0'),
    (dict(model='resnet7'), r"config.model: create_model: unknown model"),
])
def test_bad_input_is_one_config_error_and_writes_nothing(tmp_path, overrides,
                                                          pattern):
  with pytest.raises(config_validation.ConfigError, match=pattern):
    meta_train.meta_train(tiny_config(**overrides), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_unknown_fields_are_refused():
  config = tiny_config()
  config.schedule = {'name': 'plrs'}
  with pytest.raises(config_validation.ConfigError,
                     match=r'config.schedule is not a config field'):
    config_validation.validate_meta_train(config)


@pytest.mark.slow
def test_command_line_reports_bad_input_in_one_line(tmp_path):
  process = subprocess.run(
      [sys.executable, '-m', 'train.meta_train', f'--workdir={tmp_path}/run',
       '--config.num_meta=105'], cwd=REPO, capture_output=True, text=True,
      env={**os.environ, 'PYTHONPATH': str(REPO)}, timeout=300, check=False)
  assert process.returncode == 2
  assert process.stderr.strip().splitlines() == [
      'error: the held-out set must take as many examples of each of the 10 '
      "classes of 'digits': its size must be a positive multiple of 10, got "
      '105.']
  assert not (tmp_path / 'run').exists()
