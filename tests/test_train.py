"""The training app end to end: data, devices, resume, SIGTERM, divergence."""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import float_tolerance
from runs import small_config
from test_mlr_snet import numpy_gamma
from test_mlr_snet import numpy_run
from train import input_pipeline
from train import engine
from train import errors
from train import mlr_snet_file
from train import models
from train import optimizers
from train import train
from train import workdir as workdir_lib
from train.configs import default

# End-to-end: subprocesses, training runs, benchmark smoke runs.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]


def read_metrics(workdir):
  lines = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [json.loads(line) for line in lines]


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_digits_run_logs_metrics_and_draws_the_figure(reference_run):
  workdir, result = reference_run
  records = read_metrics(workdir)
  epochs = [r for r in records if 'epoch' in r]
  steps = [r for r in records if 'epoch' not in r]
  assert [r['epoch'] for r in epochs] == [1, 2, 3]
  assert {'train_loss', 'train_accuracy', 'test_loss',
          'test_accuracy'} <= set(epochs[0])
  # Steps count updates from 1: every 5th step and each epoch's last one.
  expected = sorted(set(range(5, 67, 5)) | {22, 44, 66})
  assert [r['step'] for r in steps] == expected
  assert [r['step'] for r in epochs] == [22, 44, 66]
  # The logged rate is the PLRS draw of that update (optax's count is one
  # less): within the bounds and equal to the schedule rebuilt from the seed,
  # as plrs_jax defines it.
  key = engine.run_keys(0).schedule
  schedule = optimizers.create_schedule(small_config().schedule, key=key,
                                   steps_per_epoch=22, num_steps=66)
  for r in steps:
    assert 0.07 <= r['lr'] < 0.1
    np.testing.assert_allclose(r['lr'], schedule(r['step'] - 1), rtol=1e-6)
  assert epochs[-1]['test_accuracy'] > 0.9
  assert result.metrics['test_accuracy'] == epochs[-1]['test_accuracy']
  assert int(result.state.step) == 66
  assert (workdir / 'run.png').stat().st_size > 10_000


def test_resumed_run_is_bit_identical_and_prunes_old_checkpoints(
    reference_run, tmp_path):
  ref_dir, ref = reference_run
  # PLRS does not depend on the run's length, so 2 epochs extend to 3.
  # Keeping one checkpoint (plus the best) also checks that the checkpoints
  # written before the resume are pruned like the others.
  train.train_and_evaluate(small_config(num_epochs=2, keep_checkpoints=1),
                           str(tmp_path))
  resumed = train.train_and_evaluate(
      small_config(num_epochs=3, keep_checkpoints=1), str(tmp_path))
  assert_trees_equal(resumed.state.params, ref.state.params)
  assert_trees_equal(resumed.state.batch_stats, ref.state.batch_stats)
  assert read_metrics(tmp_path) == read_metrics(ref_dir)
  epochs = [r for r in read_metrics(tmp_path) if 'epoch' in r]
  best = max(epochs, key=lambda r: r['test_accuracy'])['step']
  manager = ocp.CheckpointManager(tmp_path / 'checkpoints')
  assert set(manager.all_steps()) == {66, best}
  manager.close()


def copy_of(workdir, tmp_path):
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  return copy


def test_finished_run_is_left_as_it_is(reference_run, tmp_path, capsys):
  ref_dir, ref = reference_run
  workdir = copy_of(ref_dir, tmp_path)
  before = {p: p.stat().st_mtime_ns for p in workdir.rglob('*')}
  result = train.train_and_evaluate(small_config(), str(workdir))
  assert 'is finished (66 steps, 3 epoch(s)' in capsys.readouterr().out
  # Nothing was written: same files, same times (run.json included).
  assert {p: p.stat().st_mtime_ns for p in workdir.rglob('*')} == before
  assert_trees_equal(result.state.params, ref.state.params)
  assert result.metrics['test_accuracy'] == ref.metrics['test_accuracy']


@pytest.mark.parametrize('overrides,changed', [
    (dict(batch_size=32), 'batch_size: 64 -> 32'),
    (dict(seed=1), 'seed: 0 -> 1'),
    (dict(schedule=dict(name='plrs', min_value=0.05, max_value=0.1)),
     'schedule.min_value: 0.07 -> 0.05'),
    (dict(momentum=0.9, augment=True),
     'augment: False -> True\n  momentum: 0.0 -> 0.9'),
])
def test_resume_with_another_config_is_refused(reference_run, tmp_path,
                                               overrides, changed):
  workdir = copy_of(reference_run[0], tmp_path)
  before = {p: p.stat().st_mtime_ns for p in workdir.rglob('*')}
  with pytest.raises(workdir_lib.WorkdirError) as error:
    train.train_and_evaluate(small_config(**overrides), str(workdir))
  assert 'holds a run started with another config' in str(error.value)
  assert changed in str(error.value)
  assert 'Choose a new --workdir' in str(error.value)
  assert {p: p.stat().st_mtime_ns for p in workdir.rglob('*')} == before


def test_longer_run_is_refused_for_a_schedule_shaped_by_its_length(tmp_path):
  # Knee explores for one epoch of 22 steps, then decays to 0 at the end of
  # the run: after 30 steps of a 66-step run, a 110-step run would have used
  # other rates at steps 23-30. After 20 steps it would not.
  config = small_config(num_epochs=3)
  config.schedule = dict(name='knee', peak_value=0.1, warmup_steps=0,
                         explore_steps_epochs=1)
  recorded = config.to_dict()
  longer = small_config(num_epochs=5, schedule=config.schedule)
  schedule_for_length = lambda n: optimizers.create_schedule(
      longer.schedule, key=jax.random.key(0), steps_per_epoch=22, num_steps=n)
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r"num_epochs: 3 -> 5 \(the knee schedule depends "
                     r"on the run's length: the 30 steps taken"):
    train._check_same_run(recorded, longer, tmp_path, 30, schedule_for_length,
                          22)
  train._check_same_run(recorded, longer, tmp_path, 20, schedule_for_length,
                        22)
  # PLRS does not depend on the length: any extension passes.
  plrs = small_config(num_epochs=3)
  plrs_longer = small_config(num_epochs=9)
  schedule_for_length = lambda n: optimizers.create_schedule(
      plrs.schedule, key=jax.random.key(0), steps_per_epoch=22, num_steps=n)
  train._check_same_run(plrs.to_dict(), plrs_longer, tmp_path, 66,
                        schedule_for_length, 22)


def test_damaged_checkpoint_and_partial_metrics_line_do_not_strand_a_run(
    reference_run, tmp_path, capsys):
  ref_dir, ref = reference_run
  workdir = copy_of(ref_dir, tmp_path)
  # The newest checkpoint loses half of every file (a crash mid-copy); the
  # metrics log ends in half a line (a crash mid-write).
  damaged = [f for f in (workdir / 'checkpoints' / '66').rglob('*')
             if f.is_file() and f.stat().st_size > 0]
  for f in damaged:
    f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
  with (workdir / 'metrics.jsonl').open('a') as f:
    f.write('{"step": 67, "lr": 0.0')
  resumed = train.train_and_evaluate(small_config(), str(workdir))
  out, err = capsys.readouterr()
  assert 'dropped the partial last line' in err
  skipped = [line for line in out.splitlines() if 'Skipped checkpoint' in line]
  assert len(skipped) == 1 and 'Skipped checkpoint 66: it does not restore' in (
      skipped[0])
  assert 'Resuming from the checkpoint at step 44' in out
  # Nothing deleted: the damaged checkpoint was moved aside, intact.
  aside = workdir / 'damaged_checkpoints' / '66'
  assert sorted(p.name for p in aside.rglob('*') if p.is_file()) == sorted(
      p.name for p in damaged)
  assert_trees_equal(resumed.state.params, ref.state.params)
  assert read_metrics(workdir) == read_metrics(ref_dir)


def initial_state(config):
  """The state every run of `config` starts from, built as the app builds it."""
  dataset = input_pipeline.dataset_from_config(config)
  model = models.create_model(config.model, num_classes=dataset.num_classes,
                              bn_axis_name=train.AXIS)
  return engine.create_train_state(engine.run_keys(config.seed).init, model,
                                   dataset.image_shape, optax.sgd(0.1))


def test_four_devices_equal_one_device(tmp_path):
  # Five steps of batch 256: long enough to exercise cross-replica BatchNorm
  # and pmean'd gradients, short enough that plain SGD at these rates does not
  # amplify float reassociation (after 20+ steps the runs drift apart by
  # about 1% for some initialisations).
  config = dict(num_epochs=1, batch_size=256,
                model_kwargs={'act': float_tolerance.SMOOTH_ACTIVATION})
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


@pytest.mark.parametrize('factor,message', [
    # A rate of 1000: the loss stays finite, but its smoothed value leaves
    # the range within a few steps.
    (1e4, r'at step 2[3-9] the smoothed training loss reached [\d.e+]+, more '
          r'than divergence_factor=4 times the first step\'s [\d.]+, where '
          r'the learning rate was 1000\.'),
    # 3e37: the loss overflows. The smoothed-loss rule is turned off to see
    # that a non-finite loss alone stops the run.
    (3e38, r'the loss was not finite at step (2[3-9]|3\d|4[0-4]), where the '
           r'learning rate was 3e\+37\.'),
])
def test_divergence_stops_and_keeps_the_last_good_checkpoint(
    tmp_path, factor, message):
  # A rate of 0.1 for one epoch, then 0.1 * factor.
  config = small_config(num_epochs=3)
  config.schedule = dict(name='multistep', init_value=0.1,
                         boundaries_epochs=(1,), factor=factor)
  if factor > 1e30:
    config.divergence_factor = float('inf')
  with pytest.raises(train.TrainingDiverged,
                     match=message + r'.*last good checkpoint is step 22 '):
    train.train_and_evaluate(config, str(tmp_path))
  manager = ocp.CheckpointManager(tmp_path / 'checkpoints')
  assert manager.all_steps() == [22]
  manager.close()


# The mistakes found once JAX has loaded, in the process: each is a
# ConfigError (exit status 2) raised before anything is written.
# tests/test_train_cli.py checks through the command line that such an error
# is one line without a traceback.
@pytest.mark.parametrize('overrides,pattern', [
    (dict(schedule=dict(name='cosine_annealing', init_value=0.1)),
     "config.schedule: create_schedule: unknown schedule 'cosine_annealing'"),
    (dict(schedule=dict(name='plrs', max_value=-1.0, min_value=0.07)),
     'config.schedule: plrs_schedule:'),
    (dict(schedule=dict(name='plrs', max_value=0.1, min_value=0.2)),
     'config.schedule: plrs_schedule:'),
    (dict(schedule=dict(name='plrs', max_value=0.1, min_value=0.07,
                       warmup=5)),
     "config.schedule: plrs_schedule() got an unexpected keyword argument "
     "'warmup'"),
    (dict(model='resnet7'), "config.model: create_model: unknown model "
                            "'resnet7'"),
    (dict(model_kwargs=dict(width=3)),
     "config.model_kwargs: create_model: model 'resnet8'"),
    (dict(dataset='no_such_dataset'), "Unknown dataset 'no_such_dataset'"),
    (dict(batch_size=30, num_devices=4),
     'config.batch_size=30 is not divisible by the 4 devices'),
    (dict(num_devices=64), 'config.num_devices=64'),
    (dict(batch_size=4096), 'batch_size 4096 is larger than the 1438 training'),
    # Fields that contradict each other.
    (dict(optimizer='mlr_snet', momentum=0.9),
     "config.optimizer='mlr_snet' runs plain SGD at the learnt rate"),
])
def test_bad_configs_fail_with_a_clear_message(tmp_path, overrides, pattern):
  workdir = tmp_path / 'run'
  with pytest.raises(train.ConfigError, match=re.escape(pattern)) as error:
    train.train_and_evaluate(small_config(**overrides), str(workdir))
  assert errors.exit_status(error.value) == 2
  assert not workdir.exists()


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
  whole = engine.augment(images, np.arange(8), key)
  parts = np.concatenate([engine.augment(images[i:i + 2], np.arange(i, i + 2),
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
      process_id, port, workdir, out = sys.argv[1:5]
      config = default.get_config()
      config.batch_size, config.num_epochs = 256, 1
      config.progress, config.log_every_steps = False, 5
      config.model_kwargs.act = sys.argv[5]  # smooth: see float_tolerance
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
         str(tmp_path / f'{process_id}.npz'),
         float_tolerance.SMOOTH_ACTIVATION],
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


@pytest.mark.parametrize('signum,codes', [
    (signal.SIGTERM, [143, 143]),
    # Ctrl-C in one process is passed on to the others as a preemption.
    (signal.SIGINT, [143, 130])])
def test_a_signal_to_one_process_stops_every_process_at_the_same_step(
    tmp_path, signum, codes):
  """A signal to process 1 of 2: both checkpoint the same step and exit.

  JAX's preemption service takes about a second to agree on the step: the
  run is long enough (20 epochs of 22 steps) to be stopped in the middle."""
  port = _free_port()
  workdir = tmp_path / 'run'
  flags = [f'--workdir={workdir}', '--config.distributed=True',
           f'--config.coordinator_address=127.0.0.1:{port}',
           '--config.num_processes=2', '--config.cpu_collectives=gloo',
           '--config.batch_size=64', '--config.log_every_steps=5',
           '--config.num_epochs=20', '--config.progress=False']
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'JAX_NUM_CPU_DEVICES': '1',
         'PYTHONPATH': str(REPO)}
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'train', *flags, f'--config.process_id={i}'],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]
  metrics = workdir / 'metrics.jsonl'
  deadline = time.monotonic() + 240
  while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 4):
    assert time.monotonic() < deadline and all(
        p.poll() is None for p in procs), 'the run did not start'
    time.sleep(0.005)
  procs[1].send_signal(signum)
  outputs = [p.communicate(timeout=120)[0] for p in procs]
  assert [p.returncode for p in procs] == codes, outputs
  stopped = re.search(r'Stopped by SIGTERM after step (\d+)', outputs[0])
  assert stopped, outputs[0]
  step = int(stopped.group(1))
  name = signal.Signals(signum).name
  assert f'Stopped by {name} after step {step}' in outputs[1], outputs[1]
  assert step < 20 * 22
  manager = ocp.CheckpointManager(workdir / 'checkpoints')
  assert manager.latest_step() == step
  manager.close()
  assert all(r['step'] <= step for r in read_metrics(workdir))


def test_two_regime_run_logs_the_switch(tmp_path):
  """SGD at the PLRS rates for 33 steps (1.5 epochs), then Adam at 1e-3."""
  config = small_config(num_epochs=2, optimizer='two_regime')
  config.two_regime.small_learning_rate = 1e-3
  config.two_regime.switch_step_epochs = 1.5
  train.train_and_evaluate(config, str(tmp_path))
  records = read_metrics(tmp_path)
  epochs = [r for r in records if 'epoch' in r]
  assert [r['regime'] for r in epochs] == [0, 1]
  for r in records:
    if 'epoch' not in r:  # the logged rate is the rate of that update
      if r['step'] <= 33:
        assert 0.07 <= r['lr'] < 0.1
      else:
        np.testing.assert_allclose(r['lr'], 1e-3, rtol=1e-6)
  assert (tmp_path / 'run.png').stat().st_size > 10_000


def test_autodrop_run_logs_its_state(tmp_path):
  """Three epochs: the first angle is measured in the third, no drop yet."""
  config = small_config(optimizer='autodrop', momentum=0.9)
  train.train_and_evaluate(config, str(tmp_path))
  epochs = [r for r in read_metrics(tmp_path) if 'epoch' in r]
  assert [r['optimizer_scale'] for r in epochs] == [1.0, 1.0, 1.0]
  assert [r['drops'] for r in epochs] == [0, 0, 0]
  assert [r['angular_velocity'] is None for r in epochs] == [True, True, False]
  assert 0 <= epochs[-1]['angular_velocity'] <= 180
  np.testing.assert_allclose([r['threshold'] for r in epochs], 0.01,
                             rtol=1e-6)
  assert (tmp_path / 'run.png').stat().st_size > 10_000


def test_mlr_snet_run_logs_the_shipped_nets_rates(tmp_path):
  """One epoch (22 steps) at the rates of the shipped net's last snapshot:
  gamma from the initial model's mean loss over the training split in
  evaluation mode (restated here: one apply on every training image), every
  logged rate the numpy cell's on the logged losses."""
  config = small_config(num_epochs=1, optimizer='mlr_snet', weight_decay=5e-4,
                        log_every_steps=1)
  train.train_and_evaluate(config, str(tmp_path))
  records = read_metrics(tmp_path)
  steps = [r for r in records if 'epoch' not in r]
  (epoch,) = [r for r in records if 'epoch' in r]
  assert len(steps) == 22

  dataset = input_pipeline.dataset_from_config(config)
  model = models.create_model(config.model, dataset.num_classes)
  variables = model.init(engine.run_keys(config.seed).init,
                         np.zeros((1, *dataset.image_shape), np.float32),
                         train=False)
  images, labels = input_pipeline.as_arrays(dataset.train)
  logits = model.apply(variables, (images - np.array(dataset.mean))
                       / np.array(dataset.std), train=False)
  initial_loss = float(optax.softmax_cross_entropy_with_integer_labels(
      logits, labels).mean())
  np.testing.assert_allclose(epoch['gamma'], numpy_gamma(initial_loss, 10),
                             rtol=1e-5)
  net = mlr_snet_file.load(None).snapshots[-1]
  rates, _, _ = numpy_run([net] * 22, [r['train_loss'] for r in steps],
                          [epoch['gamma']] * 22)
  np.testing.assert_allclose([r['lr'] for r in steps], rates, atol=2e-5)
  assert (tmp_path / 'run.png').stat().st_size > 10_000


def test_schedule_free_is_evaluated_at_x_with_batchnorm_recomputed_there(
    tmp_path):
  """One epoch of 5 steps on two devices: the test metrics are the model's
  at schedule-free's average x, BatchNorm's statistics each of the next
  epoch's first 5 batches' mean and variance at x, averaged (restated with
  the model applied to each batch), not the running averages gathered at y."""
  config = small_config(num_epochs=1, train_subset=320, num_devices=2,
                        optimizer='contrib.schedule_free_sgd')
  config.schedule = dict(name='constant', value=0.5)
  result = train.train_and_evaluate(config, str(tmp_path))
  (epoch,) = [r for r in read_metrics(tmp_path) if 'epoch' in r]

  dataset = input_pipeline.dataset_from_config(config)
  model = models.create_model(config.model, dataset.num_classes)
  x = engine.evaluation_params(result.state)
  normalize = lambda images: engine.normalize(images, dataset.mean,
                                              dataset.std)
  images, _ = input_pipeline.as_arrays(dataset.train)
  rows = input_pipeline.epoch_order(len(images), config.seed, 1)[:320]
  batch_stats = [model.apply(
      {'params': x, 'batch_stats': result.state.batch_stats},
      normalize(images[batch]), train=True, mutable=['batch_stats'])[1]
                 for batch in rows.reshape(5, 64)]
  # One update from the running averages r: m r + (1 - m) s; s recovered.
  momentum = models.BN_MOMENTUM
  recomputed = jax.tree.map(
      lambda r, *updated: np.mean([(u - momentum * r) / (1 - momentum)
                                   for u in updated], axis=0),
      result.state.batch_stats, *[s['batch_stats'] for s in batch_stats])
  test_images, test_labels = input_pipeline.as_arrays(dataset.test)

  def test_loss(stats):
    logits = model.apply({'params': x, 'batch_stats': stats},
                         normalize(test_images), train=False)
    return float(optax.softmax_cross_entropy_with_integer_labels(
        logits, test_labels).mean())

  np.testing.assert_allclose(epoch['test_loss'], test_loss(recomputed),
                             rtol=1e-4)
  running = test_loss(result.state.batch_stats)
  assert abs(running / epoch['test_loss'] - 1) > 0.01
