"""Data-parallel training of image classifiers with any plrs_jax schedule,
laid out like the Flax ImageNet example: `loop_step`, `eval_step`, then
`train_and_evaluate` (set up, open the run, loop, finish). Under `jax.pmap`,
N devices compute what one computes on the global batch.
"""

import functools
import json
import pathlib
import signal
import sys
from typing import Any, NamedTuple

from flax import jax_utils
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

if not __package__:  # `python -m train` from inside train/ ran this file.
  print('error: run `python -m train` from the folder that holds train/ '
        f'({pathlib.Path(__file__).resolve().parent.parent}), not from inside '
        'train/.', file=sys.stderr)
  sys.exit(2)

from train import bookkeeping
from train import checkpoints
from train import config_validation
from train import engine
from train import errors
from train import input_pipeline
from train import optimizers
from train import plots
from train import workdir as workdir_lib
from train.configs import base

ConfigError = config_validation.ConfigError
TrainingDiverged = errors.TrainingDiverged

AXIS = 'batch'


class LoopState(engine.TrainState):
  """What the loop carries: the step's state (`engine.TrainState`), the
  epoch's running sums and the divergence watch."""
  totals: dict[str, jax.Array]
  monitor: dict[str, jax.Array]


class TrainResult(NamedTuple):
  """What a run ends with: the state on the host and the last metrics."""
  state: LoopState
  metrics: dict[str, Any]


def _zero_totals() -> dict[str, jax.Array]:
  return {'loss': jnp.float32(0), 'accuracy': jnp.float32(0),
          'count': jnp.int32(0)}


def _new_monitor() -> dict[str, jax.Array]:
  nan = jnp.float32(jnp.nan)
  return {'first_loss': nan, 'smoothed_loss': nan, 'diverged_loss': nan,
          'diverged_lr': nan, 'diverged_step': jnp.int32(-1)}


# The watch: a moving average of the loss over ~10 steps against the first.
SMOOTHING = 0.9


def _watch(monitor: dict[str, jax.Array], metrics: dict[str, jax.Array],
           step: jax.Array, divergence_factor: float) -> dict[str, jax.Array]:
  """The watch after the step `step` (counted from 1) with `metrics`."""
  loss = metrics['loss']
  first = jnp.where(jnp.isnan(monitor['first_loss']), loss,
                    monitor['first_loss'])
  smoothed = monitor['smoothed_loss']
  smoothed = jnp.where(jnp.isnan(smoothed), loss,
                       SMOOTHING * smoothed + (1 - SMOOTHING) * loss)
  bad = ~jnp.isfinite(loss) | (smoothed > divergence_factor * first)
  new = bad & (monitor['diverged_step'] < 0)
  at_new = {'step': step, 'lr': metrics.get('lr', jnp.nan),
            'loss': jnp.where(jnp.isfinite(loss), smoothed, loss)}
  diverged = {f'diverged_{k}': jnp.where(new, v, monitor[f'diverged_{k}'])
              for k, v in at_new.items()}
  return {'first_loss': first, 'smoothed_loss': smoothed, **diverged}


def loop_step(state: LoopState, batch: dict[str, jax.Array], *,
              inputs: engine.StepConstants, divergence_factor: float
              ) -> tuple[LoopState, dict[str, jax.Array]]:
  """`engine.train_step` on this device's rows, with totals and watch."""
  new_state, metrics = engine.train_step(state, batch, inputs, AXIS)
  totals = {'count': state.totals['count'] + 1, **{
      k: state.totals[k] + metrics[k] for k in ('loss', 'accuracy')}}
  return new_state.replace(totals=totals, monitor=_watch(
      state.monitor, metrics, new_state.step, divergence_factor)), metrics


def eval_step(state: LoopState, batch: dict[str, jax.Array], *,
              inputs: engine.StepConstants) -> dict[str, jax.Array]:
  """`engine.eval_sums` of this device's rows, summed over the devices."""
  return jax.lax.psum(engine.eval_sums(state, batch, inputs), AXIS)


def _shard(batch: dict[str, np.ndarray], num_devices: int):
  """(local_batch, ...) host arrays -> (devices, per_device, ...)."""
  return jax.tree.map(
      lambda x: x.reshape(num_devices, -1, *x.shape[1:]), batch)


def _first_replica(tree):
  """This process's first replica, on its device (`jax_utils.unreplicate`
  keeps the device axis when pmap runs on some of the local devices)."""
  return jax.tree.map(lambda x: x.addressable_shards[0].data[0], tree)


def _unreplicate(tree):
  return jax.device_get(_first_replica(tree))


def _setup_devices(config: ml_collections.ConfigDict) -> list[jax.Device]:
  """Initialises multi-host JAX if asked; returns this process's devices."""
  if config.distributed:
    if config.cpu_collectives:
      jax.config.update('jax_cpu_collectives_implementation',
                        config.cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=config.coordinator_address,
        num_processes=config.num_processes, process_id=config.process_id)
  devices = jax.local_devices()
  if config.num_devices > len(devices):
    raise ConfigError(
        f'config.num_devices={config.num_devices} but this process has only '
        f'{len(devices)} devices; use at most {len(devices)}, or 0 for all.')
  devices = devices[:config.num_devices or None]
  total = len(devices) * jax.process_count()
  for field in ('batch_size', 'eval_batch_size'):
    if config[field] % total:
      raise ConfigError(
          f'config.{field}={config[field]} is not divisible by the {total} '
          f'devices ({jax.process_count()} processes x {len(devices)} '
          f'local); use a multiple of {total}.')
  return devices


def _check_same_run(recorded: dict[str, Any], config: ml_collections.ConfigDict,
                    workdir: pathlib.Path, done_steps: int,
                    schedule_for_length, steps_per_epoch: int) -> None:
  """Refuses another config; `num_epochs` may change where the steps taken
  keep their rates (PLRS, constant...; not knee or MLR-SNet's snapshots)."""
  refused = workdir_lib.changed_fields(recorded, config.to_dict(),
                                       base.base_config().to_dict())
  notes = {}
  if list(refused) == ['num_epochs']:
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
  workdir_lib.refuse_other_run(workdir, refused, notes)


def _check_logged_rates(config: ml_collections.ConfigDict,
                        workdir: pathlib.Path, done_steps: int,
                        schedule: optax.Schedule,
                        steps_per_epoch: int) -> None:
  """Refuses a run whose logged rates this code would not give its config
  (the code changed how it reads the config since the run started)."""
  planned = optimizers.planned_rate(config, schedule, steps_per_epoch)
  path = workdir / 'metrics.jsonl'
  logged = [(r['step'], r['lr']) for r in (
      workdir_lib.read_metrics(path, warn=False) if path.exists() else [])
            if 'lr' in r and r['step'] <= done_steps]
  if planned is None or not logged:
    return
  steps, rates = np.asarray(logged).T
  now = np.asarray(jax.jit(jax.vmap(planned))(steps.astype(np.int32) - 1))
  # The step computed each rate inside its own program, this check vectorised:
  # float32 results may differ by a few ulps of the schedule's largest value
  # (a decay cancels near its end), so 16 of them are allowed besides rtol.
  ulps = 16 * np.finfo(np.float32).eps * np.abs(rates).max()
  differ = ~np.isclose(now, rates, rtol=1e-6, atol=ulps)
  if differ.any():
    i = differ.argmax()
    raise workdir_lib.WorkdirError(
        f'{workdir} holds a run that took step {int(steps[i])} at rate '
        f'{rates[i]:.6g}, where this code steps its config at {now[i]:.6g}; '
        'resuming would mix two runs. Choose a new --workdir, or finish the '
        'run with the code that started it (its versions are in '
        f'{workdir / "run.json"}).')


def _target_for(state: LoopState) -> checkpoints.TargetFor:
  """`checkpoints.TargetFor` of `state`'s checkpoints and of the older layout
  {'state', 'totals', 'monitor'}, whose optimizer state holds no report and
  whose watch no rate."""

  def target_for(tree):
    if 'state' not in tree:
      return state, lambda restored: restored
    old = {'state': engine.from_carry(
        {**engine.carry(state), 'opt_state': state.opt_state.inner_state},
        apply_fn=None), 'totals': state.totals, 'monitor': {
            k: v for k, v in state.monitor.items() if k != 'diverged_lr'}}

    def convert(restored):
      arrays = engine.carry(restored['state'])
      arrays['opt_state'] = state.opt_state._replace(
          count=arrays['step'], inner_state=arrays['opt_state'])
      return state.replace(**arrays, totals=restored['totals'],
                           monitor={**state.monitor, **restored['monitor']})

    return old, convert

  return target_for


def _diverged_message(monitor: dict[str, Any], factor: float,
                      last_checkpoint: int | None,
                      workdir: pathlib.Path) -> str:
  step, loss = int(monitor['diverged_step']), float(monitor['diverged_loss'])
  what = (f'at step {step} the smoothed training loss reached {loss:.4g}, '
          f'more than divergence_factor={factor:g} times the first step\'s '
          f'{float(monitor["first_loss"]):.4g}' if np.isfinite(loss) else
          f'the loss was not finite at step {step}')
  where = (f'The last good checkpoint is step {last_checkpoint} in '
           f'{workdir / "checkpoints"}.' if last_checkpoint else
           'No checkpoint was saved before it.')
  return (f'Training diverged: {what}, where the learning rate was '
          f'{float(monitor["diverged_lr"]):.6g}. Lower the learning rate (or '
          f'the schedule\'s bounds). {where}')


@bookkeeping.closes_runs
def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> TrainResult:
  """Trains, evaluates every epoch, logs, checkpoints and resumes.

  The config is checked before anything is written (else ConfigError,
  DatasetError or WorkdirError). Running again resumes from the newest
  checkpoint that restores and ends where an uninterrupted run ends. Returns
  the final state on the host and the last epoch's metrics, with
  'stopped_early' and 'signal'; TrainingDiverged names the step and rate.
  """
  config_validation.validate(config)
  workdir = workdir_lib.check_path(workdir)
  devices = _setup_devices(config)
  num_devices, is_main = len(devices), jax.process_index() == 0
  dataset = input_pipeline.dataset_from_config(config)
  steps_per_epoch = input_pipeline.steps_per_epoch(dataset, config.batch_size)
  num_steps = config.num_epochs * steps_per_epoch
  model = config_validation.model(config, dataset.num_classes,
                                  bn_axis_name=AXIS)
  keys = engine.run_keys(config.seed)
  inputs = engine.StepConstants(dataset.mean, dataset.std,
                                keys.augment if config.augment else None,
                                keys.dropout)
  # pmap spans every process's devices unless the config picks fewer local
  # ones (single process only).
  pmap_devices = devices if config.num_devices else None
  p_loop_step = jax.pmap(
      functools.partial(loop_step, inputs=inputs,
                        divergence_factor=config.divergence_factor),
      axis_name=AXIS, devices=pmap_devices, donate_argnums=0)
  p_eval_step = jax.pmap(functools.partial(eval_step, inputs=inputs),
                         axis_name=AXIS, devices=pmap_devices)

  p_recompute_bn = jax.pmap(
      lambda state, images: state.replace(batch_stats=(
          engine.recomputed_batch_stats(state, images, inputs))),
      axis_name=AXIS, devices=pmap_devices)

  def evaluate(state, splits=('test',), step=None):
    # Schedule-free is evaluated at its average x, with BatchNorm's statistics
    # recomputed there over the training batches from `step` on, as its
    # authors prescribe (train/seeds.py does the same).
    if step is not None and recomputes_bn:
      bn_batches = input_pipeline.train_batches(
          dataset, global_batch_size=config.batch_size, seed=keys.data_seed,
          start_step=step,
          num_steps=step + min(engine.BN_BATCHES, steps_per_epoch),
          process_index=jax.process_index(),
          process_count=jax.process_count())
      state = p_recompute_bn(state, np.stack(  # (devices, batches, rows...)
          [_shard(batch, num_devices)['image'] for batch in bn_batches], 1))
    metrics = {}
    for split in splits:
      metrics.update(engine.evaluate(
          lambda batch: _first_replica(p_eval_step(
              state, _shard(batch, num_devices))),
          input_pipeline.eval_batches(
              dataset, batch_size=config.eval_batch_size, split=split,
              process_index=jax.process_index(),
              process_count=jax.process_count()), split))
    return metrics

  def evaluate_host(state, split='test', step=None):
    return evaluate(jax_utils.replicate(state, devices), (split,), step)

  def schedule_for_length(length: int) -> optax.Schedule:
    return config_validation.build_or_config_error(
        'schedule', optimizers.create_schedule, config.schedule,
        key=keys.schedule, steps_per_epoch=steps_per_epoch, num_steps=length)

  schedule = schedule_for_length(num_steps)
  initial_loss = (engine.initial_loss(evaluate_host, keys, model,
                                      dataset.image_shape)
                  if optimizers.needs_initial_loss(config) else None)
  tx = config_validation.build_or_config_error(
      'optimizer', optimizers.create_optimizer, config, schedule,
      steps_per_epoch, initial_loss=initial_loss,
      num_classes=dataset.num_classes)

  def check_resume(recorded: dict[str, Any], done_steps: int) -> None:
    _check_same_run(recorded, config, workdir, done_steps,
                    schedule_for_length, steps_per_epoch)
    _check_logged_rates(config, workdir, done_steps, schedule,
                        steps_per_epoch)

  tuned_on = input_pipeline.tuning_split(dataset)
  run = bookkeeping.open_run(
      workdir, config, lambda: engine.create_train_state(
          keys.init, model, dataset.image_shape, tx, LoopState,
          totals=_zero_totals(), monitor=_new_monitor()),
      check_resume=check_resume, num_steps=num_steps,
      keep_checkpoints=config.keep_checkpoints,
      best_metric=f'{tuned_on}_accuracy', target_for=_target_for,
      stop_signals=True)
  recomputes_bn = bool(jax.tree.leaves(run.state.batch_stats)) and (
      engine.evaluation_params(run.state) is not run.state.params)
  if run.finished:
    return _finished(workdir, run.state, run.step, steps_per_epoch, is_main,
                     lambda: evaluate_host(run.state, step=run.step))
  splits = ('validation', 'test') if tuned_on == 'validation' else ('test',)
  batches = input_pipeline.train_batches(
      dataset, global_batch_size=config.batch_size, seed=keys.data_seed,
      start_step=run.step, num_steps=num_steps,
      process_index=jax.process_index(), process_count=jax.process_count())
  progress = run.enter_context(tqdm.tqdm(
      total=num_steps, initial=run.step, unit='step',
      disable=not is_main or not config.progress, dynamic_ncols=True,
      file=sys.stderr))
  state = jax_utils.replicate(run.state, devices)
  summary = {'stopped_early': False, 'signal': 0}
  for step in range(run.step + 1, num_steps + 1):
    state, metrics = p_loop_step(state, _shard(next(batches), num_devices))
    progress.update()
    epoch_end = step % steps_per_epoch == 0
    log_now = step % config.log_every_steps == 0 or epoch_end
    # Every process must stop after the same step (bookkeeping.StopSignals).
    signum = run.signal_after(step)
    if log_now or signum:
      # The loop's only device-to-host transfer, every N steps.
      host_metrics, totals, monitor = _unreplicate(
          (metrics, state.totals, state.monitor))
      if int(monitor['diverged_step']) >= 0:
        raise TrainingDiverged(_diverged_message(
            monitor, config.divergence_factor, run.latest_checkpoint(),
            workdir))
    if log_now:
      loss, lr, accuracy = (float(host_metrics[k])
                            for k in ('loss', 'lr', 'accuracy'))
      run.log.write(step=step, lr=lr, train_loss=loss)
      progress.set_postfix(loss=f'{loss:.4f}', lr=f'{lr:.4g}',
                           acc=f'{accuracy:.3f}')
    record = None
    if epoch_end:
      record = {'epoch': step // steps_per_epoch, 'step': step,
                **_train_averages(totals), **evaluate(state, splits, step),
                **_optimizer_record(host_metrics)}
      run.log.write(**record)
      progress.write(_epoch_line(record))
      summary.update(record)
      state = state.replace(
          totals=jax_utils.replicate(_zero_totals(), devices))
    if epoch_end or signum:
      # The epoch's record travels with its checkpoint: a finished run
      # whose last line of metrics.jsonl was lost gets it back.
      run.save(step, _unreplicate(state), metrics=record)
    if signum:
      progress.write(
          f'Stopped by {signal.Signals(signum).name} after step {step}; '
          f'the checkpoint is saved in {workdir}. Run the same command '
          'again to resume.')
      summary.update(stopped_early=True, signal=signum)
      break
  if is_main and not summary['stopped_early']:
    _plot(config, workdir, schedule, steps_per_epoch, num_steps)
  return TrainResult(state=_unreplicate(state), metrics=summary)


def _train_averages(totals: dict[str, Any]) -> dict[str, float]:
  """The epoch's mean training loss and accuracy, from its running sums."""
  count = float(totals['count'])
  return {f'train_{k}': float(totals[k]) / count
          for k in ('loss', 'accuracy')}


def _epoch_line(record: dict[str, Any]) -> str:
  """What an epoch's end prints of its record."""
  validation = (f'validation accuracy {record["validation_accuracy"]:.4f}, '
                if 'validation_accuracy' in record else '')
  return (f'epoch {record["epoch"]}: train loss {record["train_loss"]:.4f}, '
          f'{validation}test accuracy {record["test_accuracy"]:.4f}')


def _plot(config: ml_collections.ConfigDict, workdir: pathlib.Path,
          schedule: optax.Schedule, steps_per_epoch: int,
          num_steps: int) -> None:
  """Draws run.png from metrics.jsonl and says where both are."""
  method = (f'MLR-SNet ({config.mlr_snet.transfer})'
            if optimizers.needs_initial_loss(config) else
            config.schedule.name)
  planned = optimizers.planned_rate(config, schedule, steps_per_epoch)
  # Rates that depend on the run are drawn as logged.
  rates = (None if planned is None else
           np.asarray(jax.jit(jax.vmap(planned))(jnp.arange(num_steps))))
  figure = plots.plot_run(
      workdir / 'metrics.jsonl', workdir / 'run.png',
      title=f'{config.model} on {config.dataset}, {method}',
      learning_rates=rates)
  print(f'Metrics: {workdir / "metrics.jsonl"}\nFigure: {figure}')


def _optimizer_record(metrics: dict[str, Any]) -> dict[str, Any]:
  """The optimizer's fields of the step, as JSON (NaN, not measured: null)."""
  values = {k: v.item() for k, v in metrics.items()
            if k not in ('loss', 'accuracy', 'lr')}
  return {k: None if v != v else v for k, v in values.items()}


def _finished(workdir, state, done, steps_per_epoch, is_main,
              evaluate_final) -> TrainResult:
  """A finished run's rerun changes nothing but a lost last record, written
  back from the final checkpoint (or re-evaluated, for an older one)."""
  path = workdir / 'metrics.jsonl'
  records = [r for r in workdir_lib.read_metrics(path) if r['step'] <= done]
  epochs = [r for r in records if 'epoch' in r]
  if not epochs or epochs[-1]['step'] != done:
    kept = checkpoints.saved_metrics(workdir / 'checkpoints' / str(done))
    record = (kept if 'train_loss' in kept else
              {'epoch': done // steps_per_epoch, 'step': done,
               **evaluate_final()})
    epochs.append(record)
    if is_main:
      workdir_lib.atomic_write_text(path, ''.join(
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
