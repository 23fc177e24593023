"""The training app end to end: data, devices, resume, SIGTERM, divergence."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import float_tolerance
from train import input_pipeline
from train import models
from train import train
from train.configs import default

REPO = pathlib.Path(__file__).resolve().parents[1]


def small_config(**overrides):
  """Digits, ResNet-8, 22 steps an epoch; quick enough to run several times."""
  config = default.get_config()
  config.batch_size = 64
  config.num_epochs = 3
  config.num_devices = 1
  config.log_every_steps = 5
  config.keep_checkpoints = 5
  config.progress = False
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def read_metrics(workdir):
  lines = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [json.loads(line) for line in lines]


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
  """An uninterrupted 3-epoch run on one device."""
  workdir = tmp_path_factory.mktemp('reference')
  result = train.train_and_evaluate(small_config(), str(workdir))
  return workdir, result


def test_digits_run_logs_metrics_and_draws_the_figure(reference_run):
  workdir, result = reference_run
  records = read_metrics(workdir)
  epochs = [r for r in records if 'epoch' in r]
  steps = [r for r in records if 'epoch' not in r]
  assert [r['epoch'] for r in epochs] == [1, 2, 3]
  assert {'train_loss', 'train_accuracy', 'test_loss',
          'test_accuracy'} <= set(epochs[0])
  # Every 5th step (1-based) and each epoch's last step, as 0-based indices.
  expected = sorted({s - 1 for s in range(5, 67, 5)} | {21, 43, 65})
  assert [r['step'] for r in steps] == expected
  # The logged rate is the PLRS draw of that step: within the bounds and
  # equal to the schedule rebuilt from the seed, as plrs_jax defines it.
  key = jax.random.split(jax.random.key(0), 3)[0]
  schedule = train.create_schedule(small_config().schedule, key=key,
                                   steps_per_epoch=22, num_steps=66)
  for r in steps:
    assert 0.07 <= r['lr'] < 0.1
    np.testing.assert_allclose(r['lr'], schedule(r['step']), rtol=1e-6)
  assert epochs[-1]['test_accuracy'] > 0.9
  assert result.metrics['test_accuracy'] == epochs[-1]['test_accuracy']
  assert int(result.state.step) == 66
  assert (workdir / 'run.png').stat().st_size > 10_000


def test_resumed_run_is_bit_identical(reference_run, tmp_path):
  ref_dir, ref = reference_run
  train.train_and_evaluate(small_config(num_epochs=2), str(tmp_path))
  resumed = train.train_and_evaluate(small_config(num_epochs=3), str(tmp_path))
  assert_trees_equal(resumed.state.params, ref.state.params)
  assert_trees_equal(resumed.state.batch_stats, ref.state.batch_stats)
  assert read_metrics(tmp_path) == read_metrics(ref_dir)


def test_sigterm_checkpoints_and_resume_matches(reference_run, tmp_path,
                                                capsys):
  ref_dir, ref = reference_run
  metrics = tmp_path / 'metrics.jsonl'

  def send_sigterm_once_training_runs():
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
      # The 7th line is logged mid-way through the second epoch.
      if metrics.exists() and len(metrics.read_text().splitlines()) >= 7:
        os.kill(os.getpid(), signal.SIGTERM)
        return
      time.sleep(0.005)

  thread = threading.Thread(target=send_sigterm_once_training_runs)
  thread.start()
  stopped = train.train_and_evaluate(small_config(), str(tmp_path))
  thread.join()
  assert stopped.metrics['stopped_early']
  assert 'Stopped by SIGTERM' in capsys.readouterr().out
  stop_step = int(stopped.state.step)
  assert 22 < stop_step < 66
  manager = ocp.CheckpointManager(tmp_path / 'checkpoints')
  assert manager.latest_step() == stop_step
  manager.close()
  resumed = train.train_and_evaluate(small_config(), str(tmp_path))
  assert_trees_equal(resumed.state.params, ref.state.params)
  assert read_metrics(tmp_path) == read_metrics(ref_dir)


def initial_state(config):
  """The state every run of `config` starts from, built as the app builds it."""
  dataset = input_pipeline.dataset_from_config(config)
  model = models.create_model(config.model, num_classes=dataset.num_classes,
                              bn_axis_name=train.AXIS)
  return train.create_train_state(train.parameter_init_key(config.seed), model,
                                  dataset.image_shape, optax.sgd(0.1))


def test_four_devices_equal_one_device(tmp_path):
  # Five steps of batch 256: long enough to exercise cross-replica BatchNorm
  # and pmean'd gradients, short enough that plain SGD at these rates does not
  # amplify float reassociation (after 20+ steps the runs drift apart by
  # about 1% for some initialisations).
  config = dict(num_epochs=1, batch_size=256)
  one = train.train_and_evaluate(small_config(num_devices=1, **config),
                                 str(tmp_path / 'one'))
  four = train.train_and_evaluate(small_config(num_devices=4, **config),
                                  str(tmp_path / 'four'))
  assert int(four.state.step) == int(one.state.step) == 5
  start = initial_state(small_config())
  float_tolerance.assert_same_training(four.state.params, one.state.params,
                                       start.params)
  float_tolerance.assert_same_training(
      four.state.batch_stats, one.state.batch_stats, start.batch_stats)
  np.testing.assert_allclose(four.metrics['train_loss'],
                             one.metrics['train_loss'], rtol=1e-5)
  np.testing.assert_allclose(four.metrics['test_accuracy'],
                             one.metrics['test_accuracy'], atol=1 / 359)


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  # A rate of 0.1 for one epoch, then 3e37: the second epoch overflows.
  # (BatchNorm keeps the loss finite at merely huge rates such as 1e29.)
  config = small_config(num_epochs=3)
  config.schedule = dict(name='multistep', init_value=0.1,
                         boundaries_epochs=[1], factor=3e38)
  with pytest.raises(train.TrainingDiverged,
                     match=r'not finite at step (2[2-9]|3\d|4[0-3]), where '
                     r'the learning rate was 3e\+37.*last good checkpoint is '
                     r'step 22'):
    train.train_and_evaluate(config, str(tmp_path))
  manager = ocp.CheckpointManager(tmp_path / 'checkpoints')
  assert manager.all_steps() == [22]
  manager.close()


@pytest.mark.parametrize('overrides,error,pattern', [
    (dict(schedule=dict(name='cosine', init_value=0.1)), ValueError,
     'unknown schedule'),
    (dict(model='resnet7'), ValueError, 'resnet7'),
    (dict(dataset='no_such_dataset'), ValueError, 'Unknown dataset'),
    (dict(batch_size=30, num_devices=4), ValueError,
     'batch_size=30 is not divisible by the 4 devices'),
    (dict(num_devices=64), ValueError, 'num_devices=64'),
    (dict(batch_size=4096), ValueError, 'larger than the 1438 training'),
])
def test_bad_configs_fail_with_a_clear_message(tmp_path, overrides, error,
                                               pattern):
  with pytest.raises(error, match=pattern):
    train.train_and_evaluate(small_config(**overrides), str(tmp_path))


def test_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(input_pipeline.DatasetError,
                     match=r'(?s)not prepared.*tfds build cifar10.*data_dir'):
    input_pipeline.load_dataset('cifar10', data_dir=str(tmp_path))


def test_cifar10_through_tfds_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = small_config(dataset='cifar10', batch_size=16, num_epochs=1,
                        augment=True, eval_batch_size=32, num_devices=2)
  with tfds.testing.mock_data(num_examples=48):
    result = train.train_and_evaluate(config, str(tmp_path))
  records = read_metrics(tmp_path)
  assert [r['epoch'] for r in records if 'epoch' in r] == [1]
  assert int(result.state.step) == 3
  assert 0.0 <= result.metrics['test_accuracy'] <= 1.0
  assert np.isfinite(result.metrics['train_loss'])


def test_train_batches_are_epoch_permutations_and_host_shards():
  dataset = input_pipeline.load_dataset('digits')
  n = len(dataset.train)
  per_epoch = n // 100
  labels_seen = []
  full = list(input_pipeline.train_batches(
      dataset, global_batch_size=100, seed=3, start_step=0,
      num_steps=2 * per_epoch))
  # Two hosts read disjoint halves of the same global batches.
  halves = [list(input_pipeline.train_batches(
      dataset, global_batch_size=100, seed=3, start_step=0,
      num_steps=2 * per_epoch, process_index=i, process_count=2))
            for i in range(2)]
  for step, batch in enumerate(full):
    both = {k: np.concatenate([halves[0][step][k], halves[1][step][k]])
            for k in batch}
    assert_trees_equal(both, batch)
    labels_seen.append(batch['image'].reshape(100, -1))
  # Within an epoch no example repeats; the two epochs are different orders.
  first = np.concatenate(labels_seen[:per_epoch])
  second = np.concatenate(labels_seen[per_epoch:])
  assert len({row.tobytes() for row in first}) == len(first)
  assert not np.array_equal(first, second)
  # A resumed reader starts exactly where the uninterrupted one was.
  tail = list(input_pipeline.train_batches(
      dataset, global_batch_size=100, seed=3, start_step=per_epoch + 2,
      num_steps=2 * per_epoch))
  assert_trees_equal(tail, full[per_epoch + 2:])


def test_augmentation_does_not_depend_on_the_device_split():
  images = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), np.uint8)
  key = jax.random.key(1)
  whole = train.augment(images, np.arange(8), key)
  parts = np.concatenate([train.augment(images[i:i + 2], np.arange(i, i + 2),
                                        key) for i in range(0, 8, 2)])
  np.testing.assert_array_equal(whole, parts)
  # A crop of the 4-padded image: every output row appears in the (padded,
  # possibly flipped) input.
  for out, image in zip(np.asarray(whole), images):
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    candidates = [padded, padded[:, ::-1]]
    assert any(
        any(np.array_equal(out, c[dy:dy + 32, dx:dx + 32])
            for dy in range(9) for dx in range(9)) for c in candidates)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_a_four_device_run(tmp_path):
  """2 processes x 2 CPU devices (gloo on 127.0.0.1) == 1 process x 4."""
  script = textwrap.dedent("""
      import sys, numpy as np, jax
      from train import train
      from train.configs import default
      process_id, port, workdir, out = sys.argv[1:]
      config = default.get_config()
      config.batch_size, config.num_epochs = 256, 1
      config.progress, config.log_every_steps = False, 5
      if process_id != 'single':
        config.distributed = True
        config.coordinator_address = f'127.0.0.1:{port}'
        config.num_processes, config.process_id = 2, int(process_id)
        config.cpu_collectives = 'gloo'
      result = train.train_and_evaluate(config, workdir)
      leaves = jax.tree.leaves(result.state.params)
      np.savez(out, *leaves)
  """)
  port = _free_port()

  def launch(process_id, devices, workdir):
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
           'JAX_NUM_CPU_DEVICES': str(devices), 'PYTHONPATH': str(REPO)}
    return subprocess.Popen(
        [sys.executable, '-c', script, process_id, str(port), str(workdir),
         str(tmp_path / f'{process_id}.npz')],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)

  procs = [launch(str(i), 2, tmp_path / 'multi') for i in range(2)]
  single = launch('single', 4, tmp_path / 'single')
  for p in procs + [single]:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
  loaded = {name: np.load(tmp_path / f'{name}.npz')
            for name in ('0', '1', 'single')}
  names = loaded['single'].files
  # Both processes hold the result of the same all-reduces: bit-identical.
  for key in names:
    np.testing.assert_array_equal(loaded['0'][key], loaded['1'][key])
  # Against one process, the sums run in another order (see float_tolerance).
  start = jax.tree.leaves(initial_state(default.get_config()).params)
  assert len(start) == len(names)
  float_tolerance.assert_same_training(
      [loaded['0'][f'arr_{i}'] for i in range(len(start))],
      [loaded['single'][f'arr_{i}'] for i in range(len(start))], start)


def test_command_line_reports_config_errors_without_a_traceback(tmp_path):
  out = subprocess.run(
      [sys.executable, '-m', 'train', f'--workdir={tmp_path}',
       '--config.schedule.name=cosine'],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1].startswith(
      "error: create_schedule: unknown schedule 'cosine'")
  assert 'Traceback' not in out.stderr
