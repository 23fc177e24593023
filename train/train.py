"""Data-parallel training of image classifiers with any plrs_jax schedule.

Reads top to bottom like the Flax ImageNet example: `train_step` and
`eval_step` (train/engine.py's step and evaluation, with this loop's
bookkeeping), then `train_and_evaluate(config, workdir)`, which owns the
loop, metrics, checkpoints and the final figure. The run's keys, schedule and
optimizer come from train/engine.py and train/optimizers.py, as they do for
the multi-seed runner (train/seeds.py).

Under `jax.pmap` every device holds a replica of the state; gradients and
metrics are averaged with `lax.pmean` and BatchNorm uses cross-replica
statistics, so N devices compute what one device computes on the global batch.
Nothing inside a step goes to the host: the learning rate, the augmentation and
the metrics are computed on the device and fetched only every
`log_every_steps` steps.
"""

from collections.abc import Callable
import contextlib
import functools
import gc
import json
import logging
import os
import pathlib
import signal
import sys
import threading
from typing import Any, NamedTuple

from flax import jax_utils
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy
import tqdm

import plrs_jax
from train import config_validation
from train import engine
from train import errors
from train import input_pipeline
from train import models
from train import optimizers
from train import plots
from train import workdir as workdirs
from train.configs import base

ConfigError = config_validation.ConfigError

AXIS = 'batch'


TrainingDiverged = errors.TrainingDiverged


TrainState = engine.TrainState


class TrainResult(NamedTuple):
  """What a run ends with: the state on the host and the last metrics."""
  state: TrainState
  metrics: dict[str, Any]


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    totals: dict[str, jax.Array],
    monitor: dict[str, jax.Array],
    *,
    divergence_factor: float,
    **step_kwargs,
) -> tuple[TrainState, dict[str, jax.Array], dict[str, jax.Array],
           dict[str, jax.Array]]:
  """`engine.train_step` on this device's shard, with the run's bookkeeping.

  Runs under pmap(axis_name='batch').

  Args:
    state: the replicated train state.
    batch: this device's rows: 'image' (uint8), 'label', 'index'.
    totals: running sums of this epoch's metrics.
    monitor: the divergence watch (see `_new_monitor`).
    divergence_factor: the run has diverged once the smoothed loss exceeds
      this multiple of the run's first loss.
    **step_kwargs: `engine.train_step`'s keyword arguments but `axis_name`.

  Returns:
    The new state, the updated totals and monitor, and this step's metrics.
  """
  new_state, metrics = engine.train_step(state, batch, axis_name=AXIS,
                                         **step_kwargs)
  totals = {
      'loss': totals['loss'] + metrics['loss'],
      'accuracy': totals['accuracy'] + metrics['accuracy'],
      'count': totals['count'] + 1,
  }
  return new_state, totals, _watch(monitor, metrics['loss'], new_state.step,
                                   divergence_factor), metrics


# The divergence watch: an exponential moving average of the training loss
# over about 10 steps, against the loss of the run's first step.
SMOOTHING = 0.9


def _new_monitor() -> dict[str, jax.Array]:
  nan = jnp.float32(jnp.nan)
  return {'first_loss': nan, 'smoothed_loss': nan,
          'diverged_step': jnp.int32(-1), 'diverged_loss': nan}


def _watch(monitor: dict[str, jax.Array], loss: jax.Array, step: jax.Array,
           divergence_factor: float) -> dict[str, jax.Array]:
  """Updates the watch with the loss of step `step` (counted from 1)."""
  first = monitor['first_loss']
  first = jnp.where(jnp.isnan(first), loss, first)
  smoothed = monitor['smoothed_loss']
  smoothed = jnp.where(jnp.isnan(smoothed), loss,
                       SMOOTHING * smoothed + (1 - SMOOTHING) * loss)
  bad = ~jnp.isfinite(loss) | (smoothed > divergence_factor * first)
  new = bad & (monitor['diverged_step'] < 0)
  return {
      'first_loss': first,
      'smoothed_loss': smoothed,
      'diverged_step': jnp.where(new, step, monitor['diverged_step']),
      'diverged_loss': jnp.where(
          new, jnp.where(jnp.isfinite(loss), smoothed, loss),
          monitor['diverged_loss']),
  }


def eval_step(state: TrainState, batch: dict[str, jax.Array], *,
              mean: tuple[float, ...],
              std: tuple[float, ...]) -> dict[str, jax.Array]:
  """`engine.eval_sums` of this device's rows, summed over the devices."""
  return jax.lax.psum(engine.eval_sums(state, batch, mean=mean, std=std),
                      AXIS)


def _zero_totals() -> dict[str, jax.Array]:
  return {'loss': jnp.float32(0), 'accuracy': jnp.float32(0),
          'count': jnp.int32(0)}


def _shard(batch: dict[str, np.ndarray], num_devices: int):
  """(local_batch, ...) host arrays -> (devices, per_device, ...)."""
  return jax.tree.map(
      lambda x: x.reshape(num_devices, -1, *x.shape[1:]), batch)


def _unreplicate(tree):
  """This process's first replica, as host numpy arrays.

  Reads one device's shard rather than `flax.jax_utils.unreplicate`, which
  keeps the device axis when pmap runs on one of several local devices.
  """
  return jax.tree.map(
      lambda x: np.asarray(x.addressable_shards[0].data)[0], tree)


def _setup_devices(config: ml_collections.ConfigDict) -> list[jax.Device]:
  """Initialises multi-host JAX if asked; returns this process's devices."""
  if config.get('distributed', False):
    if config.get('cpu_collectives'):
      jax.config.update('jax_cpu_collectives_implementation',
                        config.cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=config.get('coordinator_address'),
        num_processes=config.get('num_processes'),
        process_id=config.get('process_id'),
    )
  devices = jax.local_devices()
  if config.get('num_devices'):
    if config.num_devices > len(devices):
      raise ConfigError(
          f'config.num_devices={config.num_devices} but this process has only '
          f'{len(devices)} devices; use at most {len(devices)}, or 0 for all.')
    devices = devices[:config.num_devices]
  return devices


def _check_batch_size(config: ml_collections.ConfigDict, num_devices: int):
  total = num_devices * jax.process_count()
  for field in ('batch_size', 'eval_batch_size'):
    if config[field] % total:
      raise ConfigError(
          f'config.{field}={config[field]} is not divisible by the {total} '
          f'devices ({jax.process_count()} processes x {num_devices} local); '
          f'use a multiple of {total}.')


class _Stop:
  """SIGINT and SIGTERM ask the loop to checkpoint and return.

  The first signal is recorded (`signum`) and the loop stops after the step
  in flight; a second one of the same kind acts as if this were not
  installed (Ctrl-C twice interrupts at once).

  With several processes SIGTERM is left to JAX's preemption service (a
  handler here would hide it from the service), which brings every process
  to the same sync point (`multihost_utils.reached_preemption_sync_point`),
  whether the notice came as a signal to any of them or from the cluster;
  Ctrl-C is forwarded to it as a SIGTERM to this process.
  """

  def __init__(self, multi_process: bool = False):
    self.signum = 0
    self._previous = {}
    self._multi_process = multi_process

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      signums = ((signal.SIGINT,) if self._multi_process else
                 (signal.SIGINT, signal.SIGTERM))
      for signum in signums:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _handle(self, signum, frame):
    del frame
    if self.signum == signum:
      signal.signal(signum, self._previous[signum])
      signal.raise_signal(signum)
    self.signum = self.signum or signum
    if self._multi_process:
      os.kill(os.getpid(), signal.SIGTERM)  # A notice to every process.

  def at(self, step: int) -> int:
    """The signal to stop for after `step` (0: go on). With several
    processes it is called at every step, as the sync point requires."""
    if not self._multi_process:
      return self.signum
    if multihost_utils.reached_preemption_sync_point(step):
      return self.signum or signal.SIGTERM
    return 0


# Config fields that change how a run is watched or where it runs, not what
# it computes: a resumed run may change them.
RESUMABLE_CHANGES = frozenset({
    'log_every_steps', 'progress', 'keep_checkpoints', 'data_dir',
    'num_devices', 'distributed', 'coordinator_address', 'num_processes',
    'process_id', 'cpu_collectives'})


def _check_same_run(recorded: dict[str, Any], config: ml_collections.ConfigDict,
                    workdir: pathlib.Path, done_steps: int,
                    schedule_for_length: Callable[[int], optax.Schedule],
                    steps_per_epoch: int) -> None:
  """Refuses to resume a run whose config changed what it computes.

  `num_epochs` may change when the steps already taken keep their rates in a
  run of the new length (PLRS, constant, multistep, warm restarts): the
  resumed run is then exactly a run started with the new length. For
  schedules shaped by the run's length (knee, one-cycle) it may not, nor
  for MLR-SNet's snapshots, which switch at fractions of it.

  A field the recorded config lacks (added to `base_config()` after the run
  started, such as `optimizer`) is no change while it keeps its default:
  the run computed what that default computes.
  """
  changed = workdirs.differences(recorded, config.to_dict())
  defaults = workdirs.flatten(base.base_config().to_dict())
  lacking = set(defaults) - set(workdirs.flatten(recorded))
  refused = {field: change for field, change in changed.items()
             if field.split('.')[0] not in RESUMABLE_CHANGES
             and not (field in lacking and change[1] == defaults[field])}
  notes = {}
  if 'num_epochs' in refused and len(refused) == 1:
    old_epochs, new_epochs = refused['num_epochs']
    steps = jnp.arange(done_steps)
    before = jax.vmap(schedule_for_length(old_epochs * steps_per_epoch))(steps)
    after = jax.vmap(schedule_for_length(new_epochs * steps_per_epoch))(steps)
    if optimizers.switches_with_length(config):
      notes['num_epochs'] = (' (MLR-SNet\'s snapshots take over at fractions '
                             'of the run\'s length)')
    elif np.allclose(before, after, rtol=1e-6, atol=0):
      refused = {}
    else:
      notes['num_epochs'] = (
          f' (the {config.schedule.name} schedule depends on the run\'s '
          f'length: the {done_steps} steps taken would have had other rates)')
  if refused:
    lines = '\n'.join(f'  {field}: {old!r} -> {new!r}{notes.get(field, "")}'
                      for field, (old, new) in refused.items())
    raise workdirs.WorkdirError(
        f'{workdir} holds a run started with another config; resuming would '
        f'mix two runs. Changed (recorded -> now):\n{lines}\n'
        'Choose a new --workdir for these settings, or run again with the '
        f'recorded ones (see {workdir / "run.json"}).')


def _checkpoint_steps(directory: pathlib.Path) -> list[int]:
  """The steps of the checkpoints in `directory`, oldest first."""
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _damage(step_dir: pathlib.Path) -> str | None:
  """What is wrong with a checkpoint's JSON files (Orbax reads them all when
  it opens the directory), or None."""
  for name in ('_CHECKPOINT_METADATA', 'metrics/metrics'):
    try:
      if (step_dir / name).exists():
        json.loads((step_dir / name).read_text())
    except (OSError, ValueError) as e:
      return f'{name}: {e}'
  return None


def _checkpoint_metrics(step_dir: pathlib.Path) -> dict[str, Any]:
  """The metrics saved with a checkpoint (its epoch's record), or {}."""
  try:
    return json.loads((step_dir / 'metrics' / 'metrics').read_text())
  except (OSError, ValueError):
    return {}


def _reason(e: Exception) -> str:
  """Why a checkpoint did not restore, in a few words: TensorStore's errors
  carry a chain of 'context: cause' and a kilobyte of spec."""
  text = str(e).strip().split(' [tensorstore_spec')[0]
  text = text.splitlines()[0] if text else type(e).__name__
  parts = text.split(': ')
  return text if len(parts) <= 2 else f'{parts[0]}: {parts[-1]}'


def _restore_one(path: pathlib.Path, target: dict[str, Any]):
  """(restored, None), or (None, why not) with Orbax's noise dropped."""
  with workdirs.held_stderr() as held:
    try:
      return ocp.StandardCheckpointer().restore(path, target), None
    except Exception as e:  # pylint: disable=broad-except
      # Damage shows as any error of the file formats underneath. The failed
      # reads' threads and asyncio tasks print tracebacks for a moment after
      # it and when collected: let them, while standard error is held, and
      # mute asyncio's logger for any left.
      gc.collect()
      held.settle()
      held.drop()
      logging.getLogger('asyncio').setLevel(logging.CRITICAL)
      return None, _reason(e)


def _restore(directory: pathlib.Path, target: dict[str, Any],
             workdir: pathlib.Path, is_main: bool):
  """The newest checkpoint that restores: (step, restored) or (0, None).

  A checkpoint that does not restore (truncated, partly deleted) is skipped
  with a one-line note and moved to workdir/damaged_checkpoints/, so that
  Orbax can open the directory and the run can save that step again; nothing
  is deleted. When none restores, nothing is moved and the run stops.
  """
  failures, step, restored = [], 0, None
  for candidate in reversed(_checkpoint_steps(directory)):
    reason = _damage(directory / str(candidate))
    if reason is None and restored is None:
      restored, reason = _restore_one(directory / str(candidate) / 'default',
                                      target)
      step = candidate if restored is not None else 0
    if reason is not None:
      failures.append((candidate, reason))
  if failures and restored is None:
    bad_step, reason = failures[0]
    raise workdirs.WorkdirError(
        f'No checkpoint in {directory} restores (the newest, step {bad_step}: '
        f'{reason}). Nothing was changed; move the workdir aside to start '
        'again, or restore the files.')
  for bad_step, reason in failures:
    aside = workdir / 'damaged_checkpoints' / str(bad_step)
    if is_main:
      aside.parent.mkdir(exist_ok=True)
      (directory / str(bad_step)).rename(aside)
    print(f'Skipped checkpoint {bad_step}: it does not restore ({reason}); '
          f'moved it to {aside}.')
  if failures and jax.process_count() > 1:
    multihost_utils.sync_global_devices('plrs_jax: damaged checkpoints')
  return step, restored


def _diverged_message(monitor: dict[str, Any],
                      schedule: optax.Schedule | None, factor: float,
                      last_checkpoint: int | None,
                      workdir: pathlib.Path) -> str:
  """What diverged where; `schedule` None: the rates are only logged."""
  step = int(monitor['diverged_step'])
  rate = (f'where the learning rate was {float(schedule(step - 1)):.6g}'
          if schedule is not None else
          f'with the rates logged in {workdir / "metrics.jsonl"}')
  loss = float(monitor['diverged_loss'])
  if np.isfinite(loss):
    what = (f'at step {step} the smoothed training loss reached {loss:.4g}, '
            f'more than divergence_factor={factor:g} times the first step\'s '
            f'{float(monitor["first_loss"]):.4g}')
  else:
    what = f'the loss was not finite at step {step}'
  where = (f'The last good checkpoint is step {last_checkpoint} in '
           f'{workdir / "checkpoints"}.' if last_checkpoint else
           'No checkpoint was saved before it.')
  return (f'Training diverged: {what}, {rate}. Lower the learning rate (or '
          f'the schedule\'s bounds). {where}')


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> TrainResult:
  """Trains, evaluates every epoch, logs, checkpoints and resumes.

  Everything the config names is checked before anything is written. A
  workdir belongs to one run: running again resumes from the newest
  checkpoint that restores and ends exactly where an uninterrupted run ends;
  a config that would change what the run computes is refused, and a
  finished run is left as it is. Steps count from 1 everywhere (checkpoint
  N, metrics.jsonl's `step` N and messages all mean "after N updates").
  With `optimizer='mlr_snet'`, an evaluation pass over the training split
  first measures the initial model's mean loss, which sets gamma.

  Args:
    config: the run's configuration (see train/configs/default.py).
    workdir: where run.json, metrics.jsonl, checkpoints/ and the figure go.

  Returns:
    The final state (unreplicated, on the host) and the last epoch's metrics
    with 'stopped_early' (True when SIGINT or SIGTERM stopped the run) and
    'signal' (that signal's number, or 0).

  Raises:
    ConfigError: a field the run cannot use (nothing is written).
    input_pipeline.DatasetError: the dataset cannot be read.
    workdirs.WorkdirError: the workdir is in use, holds another run, or no
      checkpoint in it restores.
    TrainingDiverged: the loss became non-finite or left any sensible range;
      the message names the step, its learning rate and the last good
      checkpoint, which is kept.
  """
  config_validation.validate(config)
  workdir = workdirs.check_path(workdir)
  devices = _setup_devices(config)
  num_devices = len(devices)
  _check_batch_size(config, num_devices)
  is_main = jax.process_index() == 0

  dataset = input_pipeline.dataset_from_config(config)
  steps_per_epoch = input_pipeline.steps_per_epoch(dataset, config.batch_size)
  num_steps = config.num_epochs * steps_per_epoch
  model = config_validation.built(
      'model_kwargs' if config.get('model_kwargs') else 'model',
      models.create_model, config.model, num_classes=dataset.num_classes,
      bn_axis_name=AXIS, **config.get('model_kwargs', {}))

  keys = engine.run_keys(config.seed)

  def schedule_for_length(length: int) -> optax.Schedule:
    return config_validation.built(
        'schedule', optimizers.create_schedule, config.schedule,
        key=keys.schedule, steps_per_epoch=steps_per_epoch, num_steps=length)

  schedule = schedule_for_length(num_steps)
  initial_loss = (_initial_loss(config, dataset, model, keys, devices)
                  if optimizers.needs_initial_loss(config) else None)
  tx = config_validation.built('optimizer', optimizers.create_optimizer,
                               config, schedule, steps_per_epoch,
                               initial_loss=initial_loss,
                               num_classes=dataset.num_classes)
  schedule = optimizers.optimizer_rate(config, schedule, steps_per_epoch)

  workdir.mkdir(parents=True, exist_ok=True)
  with workdirs.lock(workdir) if is_main else contextlib.nullcontext():
    return _train(config, workdir, dataset, model, tx, schedule,
                  schedule_for_length, devices, steps_per_epoch, num_steps,
                  keys)


def _initial_loss(config, dataset, model, keys, devices) -> float:
  """L_0, the mean loss of the initial model over the training split.

  As the official MLR-SNet code measures it to set gamma: in evaluation
  mode (BatchNorm with its initial running averages, mean 0 and variance
  1), every training example once.
  """
  state = engine.create_train_state(keys.init, model, dataset.image_shape,
                                    optax.identity())
  return evaluate(_pmap_eval_step(config, dataset, devices),
                  jax_utils.replicate(state, devices), dataset, config,
                  len(devices), split='train')['train_loss']


def _pmap_eval_step(config, dataset, devices):
  # pmap spans every process's devices unless the config picks fewer local
  # ones (single process only).
  return jax.pmap(functools.partial(eval_step, mean=dataset.mean,
                                    std=dataset.std),
                  axis_name=AXIS,
                  devices=devices if config.get('num_devices') else None)


def _train(config, workdir, dataset, model, tx, schedule, schedule_for_length,
           devices, steps_per_epoch, num_steps, keys) -> TrainResult:
  """The body of `train_and_evaluate`, run while holding the workdir."""
  is_main = jax.process_index() == 0
  directory = workdir / 'checkpoints'
  recorded = workdirs.read_record(workdir)
  steps = _checkpoint_steps(directory)
  if steps and recorded is not None:
    _check_same_run(recorded['config'], config, workdir, steps[-1],
                    schedule_for_length, steps_per_epoch)
  state = engine.create_train_state(keys.init, model, dataset.image_shape,
                                    tx)
  totals, monitor = _zero_totals(), _new_monitor()
  done, restored = _restore(
      directory, {'state': state, 'totals': totals, 'monitor': monitor},
      workdir, is_main)
  if restored is not None:
    state, totals, monitor = (restored['state'], restored['totals'],
                              restored['monitor'])
  if done >= num_steps:
    return _finished(workdir, state, done, steps_per_epoch, is_main,
                     lambda: evaluate(_pmap_eval_step(config, dataset, devices),
                                      jax_utils.replicate(state, devices),
                                      dataset, config, len(devices)))
  checkpoints = ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(
          preservation_policy=preservation_policy.AnyPreservationPolicy([
              preservation_policy.LatestN(config.keep_checkpoints),
              # A checkpoint taken mid-epoch (on a signal) has no test
              # accuracy; LatestN alone decides when it goes.
              preservation_policy.BestN(
                  get_metric_fn=lambda m: m['test_accuracy'], n=1,
                  keep_checkpoints_without_metrics=False),
          ]),
          # Writes each checkpoint's metrics next to it, so the best one is
          # still known after a restart.
          best_fn=lambda m: m['test_accuracy'],
          enable_async_checkpointing=False,
      ),
  )
  try:
    # Reads (and checks) metrics.jsonl before anything is said or written.
    log = workdirs.MetricsLog(workdir / 'metrics.jsonl', done,
                             enabled=is_main)
    if is_main:
      workdirs.write_record(workdir, config.to_dict(), recorded)
      if done:
        print(f'Resuming from the checkpoint at step {done} in {workdir}.')
    state, summary = _loop(
        config, workdir, dataset, schedule, devices, checkpoints, log, state,
        totals, monitor, done, steps_per_epoch, num_steps, keys)
  finally:
    with workdirs.writing(f'checkpoints in {directory}'):
      checkpoints.wait_until_finished()
      checkpoints.close()
  if is_main and not summary['stopped_early']:
    method = (f'MLR-SNet ({config.mlr_snet.transfer})'
              if optimizers.needs_initial_loss(config) else
              config.schedule.name)
    figure = plots.plot_run(
        workdir / 'metrics.jsonl', workdir / 'run.png',
        title=f'{config.model} on {config.dataset}, {method}',
        # AutoDrop's and MLR-SNet's rates depend on the run: draw the logged.
        learning_rates=None if optimizers.rate_depends_on_run(config) else
        np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(num_steps))))
    print(f'Metrics: {workdir / "metrics.jsonl"}\nFigure: {figure}')
  return TrainResult(state=state, metrics=summary)


def _finished(workdir, state, done, steps_per_epoch, is_main,
              evaluate_final) -> TrainResult:
  """A rerun of a finished run: say so, change nothing, unless the last
  epoch's record was lost from metrics.jsonl: then it is written back from
  the final checkpoint (`evaluate_final()` re-evaluates that state where the
  checkpoint predates keeping the record)."""
  path = workdir / 'metrics.jsonl'
  records = [r for r in workdirs.read_metrics(path) if r['step'] <= done]
  epochs = [r for r in records if 'epoch' in r]
  if not epochs or epochs[-1]['step'] != done:
    kept = _checkpoint_metrics(workdir / 'checkpoints' / str(done))
    record = (kept if 'train_loss' in kept else
              {'epoch': done // steps_per_epoch, 'step': done,
               **evaluate_final()})
    epochs.append(record)
    if is_main:
      workdirs.atomic_write_text(path, ''.join(
          json.dumps(r) + '\n' for r in records + [record]))
      print(f'Restored the last epoch\'s record of {path} from checkpoint '
            f'{done}' + ('.' if kept is record else
                         ' (re-evaluated; its training averages were lost).'))
  summary = {**epochs[-1], 'stopped_early': False, 'signal': 0}
  if is_main:
    accuracy = (f'; last test accuracy {summary["test_accuracy"]:.4f}'
                if 'test_accuracy' in summary else '')
    print(f'The run in {workdir} is finished ({done} steps, '
          f'{done // steps_per_epoch} epoch(s){accuracy}). Nothing to do: to '
          'train longer, raise --config.num_epochs (for a schedule that does '
          'not depend on the run\'s length), or choose a new --workdir.')
  return TrainResult(state=state, metrics=summary)


def _loop(config, workdir, dataset, schedule, devices, checkpoints, log, state,
          totals, monitor, start_step, steps_per_epoch, num_steps, keys):
  """Steps `start_step + 1 .. num_steps`; returns (host state, summary)."""
  num_devices = len(devices)
  is_main = jax.process_index() == 0
  stats = dict(mean=dataset.mean, std=dataset.std)
  pmap_devices = devices if config.get('num_devices') else None
  p_train_step = jax.pmap(
      functools.partial(
          train_step, rate=schedule, dropout_key=keys.dropout,
          augment_key=keys.augment if config.augment else None,
          divergence_factor=config.divergence_factor, **stats),
      axis_name=AXIS, devices=pmap_devices, donate_argnums=(0, 2, 3))
  p_eval_step = _pmap_eval_step(config, dataset, devices)
  state, totals, monitor = jax_utils.replicate((state, totals, monitor),
                                               devices)

  def save(step, host_totals, metrics=None):
    with workdirs.writing(f'checkpoint {step} in {checkpoints.directory}'):
      checkpoints.save(step, args=ocp.args.StandardSave({
          'state': _unreplicate(state), 'totals': host_totals,
          'monitor': _unreplicate(monitor)}), metrics=metrics, force=True)

  batches = input_pipeline.train_batches(
      dataset, global_batch_size=config.batch_size, seed=keys.data,
      start_step=start_step, num_steps=num_steps,
      process_index=jax.process_index(), process_count=jax.process_count())
  progress = tqdm.tqdm(total=num_steps, initial=start_step, unit='step',
                       disable=not is_main or not config.get('progress', True),
                       dynamic_ncols=True, file=sys.stderr)
  summary: dict[str, Any] = {'stopped_early': False, 'signal': 0}
  with _Stop(multi_process=jax.process_count() > 1) as stop, progress:
    for done in range(start_step + 1, num_steps + 1):
      batch = _shard(next(batches), num_devices)
      state, totals, monitor, metrics = p_train_step(state, batch, totals,
                                                     monitor)
      progress.update()
      epoch_end = done % steps_per_epoch == 0
      log_now = done % config.log_every_steps == 0 or epoch_end
      # Every process must stop after the same step: with several, JAX's
      # preemption sync point says which (see _Stop).
      signum = stop.at(done)
      if log_now or signum:
        # The only device-to-host transfer of the loop, every N steps.
        host = _unreplicate({'metrics': metrics, 'totals': totals,
                             'monitor': monitor})
        if int(host['monitor']['diverged_step']) >= 0:
          raise TrainingDiverged(_diverged_message(
              host['monitor'], None if optimizers.rate_depends_on_run(config)
              else schedule, config.divergence_factor,
              checkpoints.latest_step(), workdir))
      if log_now:
        loss, lr = float(host['metrics']['loss']), float(host['metrics']['lr'])
        log.write(step=done, lr=lr, train_loss=loss)
        progress.set_postfix(loss=f'{loss:.4f}', lr=f'{lr:.4g}', acc=(
            f'{float(host["metrics"]["accuracy"]):.3f}'))
      if epoch_end:
        epoch = done // steps_per_epoch
        count = float(host['totals']['count'])
        test = evaluate(p_eval_step, state, dataset, config, num_devices)
        summary = {
            'epoch': epoch, 'step': done,
            'train_loss': float(host['totals']['loss']) / count,
            'train_accuracy': float(host['totals']['accuracy']) / count,
            **test, **_optimizer_record(host['metrics']),
            'stopped_early': False, 'signal': 0,
        }
        log.write(**{k: v for k, v in summary.items()
                     if k not in ('stopped_early', 'signal')})
        progress.write(
            f'epoch {epoch}: train loss {summary["train_loss"]:.4f}, test '
            f'accuracy {test["test_accuracy"]:.4f}')
        totals = jax_utils.replicate(_zero_totals(), devices)
        # The epoch's record travels with its checkpoint: a finished run whose
        # last line of metrics.jsonl was lost gets it back from there.
        save(done, jax.device_get(_zero_totals()),
             metrics={k: v for k, v in summary.items()
                      if k not in ('stopped_early', 'signal')})
      elif signum:
        save(done, host['totals'])
      if signum:
        checkpoints.wait_until_finished()
        name = signal.Signals(signum).name
        progress.write(
            f'Stopped by {name} after step {done}; the checkpoint is saved in '
            f'{workdir}. Run the same command again to resume.')
        summary.update(stopped_early=True, signal=signum)
        break
  return _unreplicate(state), summary


def _optimizer_record(metrics: dict[str, Any]) -> dict[str, Any]:
  """The optimizer's fields of the epoch's last step, as JSON values."""
  record = {}
  for field in metrics:
    if field not in ('loss', 'accuracy', 'lr'):
      value = metrics[field].item()
      # JSON has no NaN: an angle not measured yet is null.
      record[field] = None if value != value else value
  return record


def evaluate(p_eval_step: Callable[..., Any], state: TrainState,
             dataset: input_pipeline.Dataset, config: ml_collections.ConfigDict,
             num_devices: int, split: str = 'test') -> dict[str, float]:
  """Loss and accuracy over a whole split ('test' or 'train'), in
  evaluation mode: `{split}_loss` and `{split}_accuracy`."""
  sums = {'loss': 0.0, 'correct': 0.0, 'count': 0.0}
  for batch in input_pipeline.eval_batches(
      dataset, batch_size=config.eval_batch_size, split=split,
      process_index=jax.process_index(), process_count=jax.process_count()):
    out = _unreplicate(p_eval_step(state, _shard(batch, num_devices)))
    sums = {k: sums[k] + float(out[k]) for k in sums}
  return {f'{split}_loss': sums['loss'] / sums['count'],
          f'{split}_accuracy': sums['correct'] / sums['count']}
