"""Meta-trains MLR-SNet, a learnt learning-rate schedule, on a task.

    python -m train.meta_train --config=train/configs/meta_train_digits.py --workdir=DIR

The official recipe (`base.meta_train_config` lists its settings): the model
trains with plain SGD and coupled weight decay at the rate the net phi gives
each mini-batch loss, that is `engine.train_step` with the optimizer
`optax.chain(optax.add_decayed_weights(wd), plrs_jax.mlr_snet(phi, gamma))`
built from the current phi inside the compiled step. Before the update of
every `t_val`-th step, a meta step moves phi: the batch's loss and gradient g
(`engine.batch_gradients`, the very ones the update then uses, BatchNorm in
training mode), held fixed, make one SGD step at the net's rate,
theta' = theta - alpha(phi) (g + wd theta); the loss of theta' on a batch of
the held-out set (training mode too) is the meta loss, `jax.grad` of
`plrs_jax.mlr_snet_meta_loss` its first-order hypergradient, and Adam with
PyTorch's coupled weight decay steps phi. gamma is set once by L_0, the mean
loss of the initial model over the training examples (the held-out ones
excluded) in evaluation mode, as the official code measures it.

One device runs jitted steps; the host fetches metrics every
`log_every_steps` steps (every step's together) and at each epoch's end
(test accuracy, a checkpoint), and waits on nothing else. The data order and
the model's initialisation are those of `python -m train` for the same seed
on the same examples; phi's initialisation and the held-out batch of meta
step s come from the run's schedule key (MLR-SNet is the schedule), the
batch from `fold_in(key, s)`.

The workdir holds run.json, metrics.jsonl (every step's `lr` and
`train_loss`, each meta step's `meta_loss`, each epoch's training and test
loss and accuracy and gamma), checkpoints/ (Orbax, at every epoch's end: the
model, its optimizer state, phi, Adam's state and the snapshots so far; a
rerun resumes from the newest and ends where an uninterrupted run ends),
mlr_snet.npz (the snapshots after `snapshot_epochs`, which
`python -m train --config.optimizer=mlr_snet --config.mlr_snet.checkpoint=DIR`
transfers) and meta_train.png (the learnt rate, the loss and the accuracy
over training).
"""

import functools
import pathlib
import sys
from typing import Any, NamedTuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

import plrs_jax
from train import cli
from train import config_validation
from train import engine
from train import input_pipeline
from train import mlr_snet_file
from train import models
from train import plots
from train import workdir as workdirs

FLAGS = flags.FLAGS


def _define_flags():
  """The command line's flags, defined only when this is the program (the
  other programs of train/ have a --workdir and a --config of their own)."""
  flags.DEFINE_string('workdir', None, 'Directory for the net, metrics, '
                      'checkpoints and the figure. Running again resumes.')
  config_flags.DEFINE_config_file(
      'config',
      str(pathlib.Path(__file__).parent / 'configs' / 'meta_train_digits.py'),
      'Meta-training configuration file.', lock_config=False,
      accept_new_attributes=True)
  flags.mark_flags_as_required(['workdir'])

# Fields that change how a run is watched, not what it computes.
RESUMABLE_CHANGES = frozenset({'log_every_steps', 'progress', 'data_dir'})


def model_optimizer(phi: Any, gamma: Any,
                    weight_decay: float) -> optax.GradientTransformationExtraArgs:
  """The model's optimizer at net `phi`: SGD with coupled weight decay at
  MLR-SNet's rate (its state: `rate_state`).

  Example:
    >>> tx = model_optimizer(plrs_jax.mlr_snet_init(0), 0.5, 5e-4)
    >>> state = tx.init(jnp.ones(2))
    >>> updates, state = tx.update(jnp.ones(2), state, jnp.ones(2), loss=2.3)
    >>> bool(jnp.allclose(updates, -rate_state(state).rate * 1.0005))
    True
  """
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     plrs_jax.mlr_snet(phi, gamma=gamma))


def rate_state(opt_state: Any) -> plrs_jax.MLRSNetState:
  """The `plrs_jax.MLRSNetState` inside `model_optimizer`'s state."""
  return opt_state[1]


def meta_optimizer(config: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """Adam on phi with weight decay added to the gradient, as PyTorch's.

  Example: the decay alone gets Adam's normalised step, not lr * wd * phi.

    >>> from train.configs import meta_train_digits
    >>> tx = meta_optimizer(meta_train_digits.get_config())
    >>> phi = jnp.ones(2)
    >>> updates, _ = tx.update(jnp.zeros(2), tx.init(phi), phi)
    >>> updates.round(6)
    Array([-0.001, -0.001], dtype=float32)
  """
  return optax.chain(optax.add_decayed_weights(config.meta_weight_decay),
                     optax.adam(config.meta_learning_rate))


# engine.train_step's `rate` is for schedules: MLR-SNet reports its own.
_NO_SCHEDULE = optax.constant_schedule(float('nan'))


def _train_state(carry: dict[str, Any], apply_fn: Any,
                 tx: Any = None) -> engine.TrainState:
  return engine.TrainState(
      step=carry['step'], apply_fn=apply_fn, params=carry['params'], tx=tx,
      opt_state=carry['opt_state'], batch_stats=carry['batch_stats'])


def train_step(carry: dict[str, Any], batch: dict[str, jax.Array], *,
               apply_fn: Any, weight_decay: float, dropout_key: jax.Array,
               mean: tuple[float, ...], std: tuple[float, ...]
               ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
  """`engine.train_step` at the current net: one SGD step of the model.

  Args:
    carry: the run's arrays: 'step', 'params', 'batch_stats', 'opt_state'
      (of `model_optimizer`), 'phi', 'phi_opt_state' and 'snapshots'.
    batch: 'image' (uint8), 'label' and 'index'.
    apply_fn: the model's apply.
    weight_decay: the model's coupled weight decay.
    dropout_key: the run's dropout key.
    mean: per-channel image mean.
    std: per-channel image standard deviation.

  Returns:
    The new carry and the step's metrics ('loss', 'accuracy', 'lr': the
    rate applied, 'gamma').
  """
  tx = optax.with_extra_args_support(model_optimizer(
      carry['phi'], rate_state(carry['opt_state']).gamma, weight_decay))
  state, metrics = engine.train_step(
      _train_state(carry, apply_fn, tx), batch, rate=_NO_SCHEDULE,
      augment_key=None, dropout_key=dropout_key, mean=mean, std=std)
  return {**carry, 'step': state.step, 'params': state.params,
          'opt_state': state.opt_state,
          'batch_stats': state.batch_stats}, metrics


def meta_step(carry: dict[str, Any], batch: dict[str, jax.Array],
              held_out: dict[str, jax.Array], *, apply_fn: Any,
              weight_decay: float, meta_optimizer: optax.GradientTransformation,
              meta_batch_size: int, dropout_key: jax.Array,
              meta_key: jax.Array, mean: tuple[float, ...],
              std: tuple[float, ...]
              ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
  """One Adam step of phi on the meta loss of this step's batch.

  Run before `train_step` on the same carry and batch. The held-out batch
  is `meta_batch_size` rows of `held_out` drawn without replacement from
  `fold_in(meta_key, step)`.

  Args:
    carry: as `train_step` takes it.
    batch: this step's training batch.
    held_out: the held-out set, 'image' (uint8) and 'label' arrays.
    apply_fn: the model's apply.
    weight_decay: the model's coupled weight decay.
    meta_optimizer: the optimizer of phi (`meta_optimizer`).
    meta_batch_size: rows of the held-out batch.
    dropout_key: the run's dropout key (the training batch's dropout).
    meta_key: the key of the held-out batches.
    mean: per-channel image mean.
    std: per-channel image standard deviation.

  Returns:
    The carry with the new phi and Adam state, and {'meta_loss'}: the
    held-out loss after the virtual step at the old phi.
  """
  (loss, _), grads = engine.batch_gradients(
      _train_state(carry, apply_fn), batch, augment_key=None,
      dropout_key=dropout_key, mean=mean, std=std)
  rows_key, meta_dropout = jax.random.split(
      jax.random.fold_in(meta_key, carry['step']))
  rows = jax.random.choice(rows_key, held_out['label'].shape[0],
                           (meta_batch_size,), replace=False)
  images = engine.normalize(held_out['image'][rows], mean, std)

  def meta_loss_fn(params):
    return engine.train_loss(params, carry['batch_stats'], apply_fn, images,
                             held_out['label'][rows], meta_dropout)[0]

  meta_loss, hypergrad = jax.value_and_grad(plrs_jax.mlr_snet_meta_loss)(
      carry['phi'], rate_state(carry['opt_state']), loss=loss, grads=grads,
      params=carry['params'], meta_loss_fn=meta_loss_fn,
      weight_decay=weight_decay)
  updates, phi_opt_state = meta_optimizer.update(
      hypergrad, carry['phi_opt_state'], carry['phi'])
  return {**carry, 'phi': optax.apply_updates(carry['phi'], updates),
          'phi_opt_state': phi_opt_state}, {'meta_loss': meta_loss}


def evaluate(eval_fn: Any, state: engine.TrainState,
             dataset: input_pipeline.Dataset, batch_size: int,
             split: str) -> dict[str, float]:
  """`{split}_loss` and `{split}_accuracy` of a whole split, evaluation
  mode, with `eval_fn` a jitted `engine.eval_sums`."""
  sums = [eval_fn(state, batch) for batch in input_pipeline.eval_batches(
      dataset, batch_size=batch_size, split=split)]
  total = jax.device_get(jax.tree.map(lambda *parts: sum(parts), *sums))
  return {f'{split}_loss': float(total['loss'] / total['count']),
          f'{split}_accuracy': float(total['correct'] / total['count'])}


class MetaTraining(NamedTuple):
  """A meta-training run before its first step.

  Attributes:
    config: the config.
    dataset: the dataset, its training split without the held-out set.
    held_out: the held-out set as device arrays, 'image' and 'label'.
    model: the model.
    steps_per_epoch: full batches of the training split.
    num_steps: steps of the run.
    initial_loss: L_0, the initial model's mean loss over `dataset.train`.
    gamma: `plrs_jax.mlr_snet_gamma(initial_loss, num_classes)`.
    carry: the initial arrays (see `train_step`).
    train_step: `train_step`, jitted, the carry donated.
    meta_step: `meta_step`, jitted, the carry donated.
    eval_fn: `engine.eval_sums`, jitted.
  """
  config: ml_collections.ConfigDict
  dataset: input_pipeline.Dataset
  held_out: dict[str, jax.Array]
  model: Any
  steps_per_epoch: int
  num_steps: int
  initial_loss: float
  gamma: float
  carry: dict[str, Any]
  train_step: Any
  meta_step: Any
  eval_fn: Any


def prepare(config: ml_collections.ConfigDict) -> MetaTraining:
  """Data, model, L_0, gamma, the initial arrays and the compiled steps.

  Raises:
    ConfigError: a field the run cannot use.
  """
  config_validation.validate_meta_train(config)
  dataset = input_pipeline.dataset_from_config(config)
  dataset, held_out = input_pipeline.hold_out(dataset, config.num_meta,
                                              config.split_seed)
  steps_per_epoch = input_pipeline.steps_per_epoch(dataset, config.batch_size)
  model = config_validation.built(
      'model_kwargs' if config.model_kwargs else 'model', models.create_model,
      config.model, num_classes=dataset.num_classes, **config.model_kwargs)
  keys = engine.run_keys(config.seed)
  phi_key, meta_key = jax.random.split(keys.schedule)
  stats = dict(mean=dataset.mean, std=dataset.std)
  initial = engine.create_train_state(keys.init, model, dataset.image_shape,
                                      optax.identity())
  eval_fn = jax.jit(functools.partial(engine.eval_sums, **stats))
  initial_loss = evaluate(eval_fn, initial, dataset, config.eval_batch_size,
                          'train')['train_loss']
  gamma = float(plrs_jax.mlr_snet_gamma(initial_loss, dataset.num_classes))
  phi = plrs_jax.mlr_snet_init(phi_key)
  meta_tx = meta_optimizer(config)
  carry = {
      'step': jnp.int32(0), 'params': initial.params,
      'batch_stats': initial.batch_stats,
      'opt_state': model_optimizer(phi, gamma, config.weight_decay).init(
          initial.params),
      'phi': phi, 'phi_opt_state': meta_tx.init(phi),
      'snapshots': jax.tree.map(
          lambda leaf: jnp.zeros((len(config.snapshot_epochs), *leaf.shape),
                                 leaf.dtype), phi),
  }
  # The steps donate the carry, and a buffer cannot be donated twice: give
  # every leaf its own (MLR-SNet's h and c start as one array of zeros).
  carry = jax.tree.map(jnp.copy, carry)
  common = dict(apply_fn=model.apply, weight_decay=config.weight_decay,
                dropout_key=keys.dropout, **stats)
  return MetaTraining(
      config=config, dataset=dataset,
      held_out={k: jax.device_put(v) for k, v in held_out.items()},
      model=model, steps_per_epoch=steps_per_epoch,
      num_steps=config.num_epochs * steps_per_epoch,
      initial_loss=initial_loss, gamma=gamma, carry=carry,
      train_step=jax.jit(functools.partial(train_step, **common),
                         donate_argnums=0),
      meta_step=jax.jit(functools.partial(
          meta_step, meta_optimizer=meta_tx,
          meta_batch_size=config.meta_batch_size, meta_key=meta_key,
          **common), donate_argnums=0),
      eval_fn=eval_fn)


class MetaTrainResult(NamedTuple):
  """What a meta-training run ends with.

  Attributes:
    carry: the final arrays on the host (see `train_step`); 'phi' is the
      net, 'snapshots' the kept ones, stacked.
    nets: the file of the snapshots (workdir/mlr_snet.npz).
    initial_loss: L_0.
    gamma: the rate's scale.
    metrics: the last epoch's record.
  """
  carry: dict[str, Any]
  nets: pathlib.Path
  initial_loss: float
  gamma: float
  metrics: dict[str, Any]


def meta_train(config: ml_collections.ConfigDict,
               workdir: str) -> MetaTrainResult:
  """Meta-trains, logs, checkpoints every epoch and resumes; writes the net.

  Everything the config names is checked before anything is written. A
  rerun resumes from the newest checkpoint; one whose config changes what
  the run computes is refused; a finished run writes its net and figure
  again and trains no further.

  Args:
    config: see `base.meta_train_config`.
    workdir: where the run's files go (see the module docstring).

  Returns:
    The final arrays, the net's file, L_0, gamma and the last epoch's
    metrics.

  Raises:
    ConfigError: a field the run cannot use (nothing is written).
    workdirs.WorkdirError: the workdir is in use or holds another run.
  """
  workdir = workdirs.check_path(workdir)
  run = prepare(config)
  workdir.mkdir(parents=True, exist_ok=True)
  with workdirs.lock(workdir):
    checkpoints = ocp.CheckpointManager(
        workdir / 'checkpoints', options=ocp.CheckpointManagerOptions(
            max_to_keep=2, enable_async_checkpointing=False))
    try:
      return _meta_train(run, workdir, checkpoints)
    finally:
      with workdirs.writing(f'checkpoints in {workdir / "checkpoints"}'):
        checkpoints.close()


def _meta_train(run: MetaTraining, workdir: pathlib.Path,
                checkpoints: ocp.CheckpointManager) -> MetaTrainResult:
  """The body of `meta_train`, run while holding the workdir."""
  config = run.config
  recorded = workdirs.read_record(workdir)
  done = checkpoints.latest_step() or 0
  carry = run.carry
  if done:
    changed = {field: change for field, change in workdirs.differences(
        recorded['config'] if recorded else {}, config.to_dict()).items()
               if field not in RESUMABLE_CHANGES}
    if changed:
      raise workdirs.WorkdirError(
          f'{workdir} holds a meta-training run with another config: '
          + ', '.join(f'{field}: {old!r} -> {new!r}'
                      for field, (old, new) in changed.items())
          + '. Choose a new --workdir, or run again with the recorded config.')
    carry = checkpoints.restore(done, args=ocp.args.StandardRestore(carry))
    print(f'Resuming from the checkpoint at step {done} in {workdir}.')
  workdirs.write_record(workdir, config.to_dict(), recorded)
  log = workdirs.MetricsLog(workdir / 'metrics.jsonl', done)
  print(f'L_0 = {run.initial_loss:.4f} (mean initial training loss), '
        f'gamma = {run.gamma:.4f}.')
  if done >= run.num_steps:
    print(f'The run in {workdir} is finished ({done} steps): its net and '
          'figure are written again, nothing is trained.')
  carry, summary = _loop(run, carry, done, log, checkpoints)
  if not summary:
    epochs = [r for r in workdirs.read_metrics(log.path) if 'epoch' in r]
    summary = epochs[-1] if epochs else {}
  host = jax.device_get(carry)
  nets = mlr_snet_file.save(
      workdir / mlr_snet_file.FILENAME,
      [jax.tree.map(lambda leaf, j=j: leaf[j], host['snapshots'])
       for j in range(len(config.snapshot_epochs))],
      list(config.snapshot_epochs))
  figure = plots.plot_run(
      workdir / 'metrics.jsonl', workdir / 'meta_train.png',
      title=f'MLR-SNet meta-training: {config.model} on {config.dataset}')
  print(f'Net: {nets} (snapshots after meta-epochs '
        f'{", ".join(map(str, config.snapshot_epochs))})\nFigure: {figure}')
  return MetaTrainResult(carry=host, nets=nets,
                         initial_loss=run.initial_loss, gamma=run.gamma,
                         metrics=summary)


def _loop(run: MetaTraining, carry: dict[str, Any], done: int,
          log: workdirs.MetricsLog, checkpoints: ocp.CheckpointManager):
  """Steps `done + 1 .. num_steps`; returns (carry, last epoch's record)."""
  config, steps_per_epoch = run.config, run.steps_per_epoch
  batches = input_pipeline.train_batches(
      run.dataset, global_batch_size=config.batch_size,
      seed=engine.run_keys(config.seed).data, start_step=done,
      num_steps=run.num_steps)
  pending, epoch, summary = [], [], {}
  with tqdm.tqdm(total=run.num_steps, initial=done, unit='step',
                 disable=not config.progress, dynamic_ncols=True,
                 file=sys.stderr) as progress:
    for step in range(done + 1, run.num_steps + 1):
      batch = next(batches)
      meta = {}
      if step % config.t_val == 0:
        carry, meta = run.meta_step(carry, batch, run.held_out)
      carry, metrics = run.train_step(carry, batch)
      pending.append({'step': step, **metrics, **meta})
      progress.update()
      epoch_end = step % steps_per_epoch == 0
      if step % config.log_every_steps and not epoch_end:
        continue
      # The only device-to-host transfer of the steps: every step's metrics
      # since the last one.
      for record in jax.device_get(pending):
        epoch.append(record)
        log.write(step=record['step'], lr=float(record['lr']),
                  train_loss=float(record['loss']),
                  **({'meta_loss': float(record['meta_loss'])}
                     if 'meta_loss' in record else {}))
      pending = []
      progress.set_postfix(loss=f'{float(epoch[-1]["loss"]):.4f}',
                           lr=f'{float(epoch[-1]["lr"]):.4g}')
      if epoch_end:
        summary = _end_epoch(run, carry, step, epoch, log)
        carry = _keep_snapshots(carry, config, step // steps_per_epoch)
        with workdirs.writing(f'checkpoint {step} in {checkpoints.directory}'):
          checkpoints.save(step, args=ocp.args.StandardSave(carry), force=True)
        progress.write(
            f'epoch {summary["epoch"]}: train loss '
            f'{summary["train_loss"]:.4f}, test accuracy '
            f'{summary["test_accuracy"]:.4f}, last rate {epoch[-1]["lr"]:.4g}')
        epoch = []
  return carry, summary


def _end_epoch(run: MetaTraining, carry: dict[str, Any], step: int,
               epoch: list[dict[str, Any]], log: workdirs.MetricsLog
               ) -> dict[str, Any]:
  """The epoch's record, with the test split's loss and accuracy."""
  state = _train_state(carry, run.model.apply)
  summary = {
      'epoch': step // run.steps_per_epoch, 'step': step,
      'train_loss': float(np.mean([r['loss'] for r in epoch])),
      'train_accuracy': float(np.mean([r['accuracy'] for r in epoch])),
      **evaluate(run.eval_fn, state, run.dataset, run.config.eval_batch_size,
                 'test'),
      'gamma': run.gamma,
  }
  log.write(**summary)
  return summary


def _keep_snapshots(carry: dict[str, Any], config: ml_collections.ConfigDict,
                    epoch: int) -> dict[str, Any]:
  """The carry with phi kept as each snapshot taken after `epoch`."""
  snapshots = carry['snapshots']
  for j, snapshot_epoch in enumerate(config.snapshot_epochs):
    if snapshot_epoch == epoch:
      snapshots = jax.tree.map(lambda kept, leaf, j=j: kept.at[j].set(leaf),
                               snapshots, carry['phi'])
  return {**carry, 'snapshots': snapshots}


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.
  cli.quiet_logging()
  result = cli.run_or_exit(meta_train, cli.loaded_config(), FLAGS.workdir)
  if result.metrics:
    print(f'Last epoch: test accuracy {result.metrics["test_accuracy"]:.4f}.')
  print('Transfer it: python -m train --config.optimizer=mlr_snet '
        f'--config.mlr_snet.checkpoint={result.nets} --workdir=...')


if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=cli.parse_flags)
