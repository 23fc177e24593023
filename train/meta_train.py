"""Meta-trains MLR-SNet, a learnt learning-rate schedule, on a task.

    python -m train.meta_train --config=train/configs/meta_train_digits.py --workdir=DIR

The official recipe (`base.meta_train_config`): SGD at the rate the net phi
gives each batch's loss; every `t_val`-th step, Adam moves phi along the
first-order hypergradient of a held-out batch's loss after one virtual step
(`plrs_jax.mlr_snet_meta_loss`). Writes mlr_snet.npz, the snapshots that
`python -m train --config.optimizer=mlr_snet` transfers.
"""

import functools
import pathlib
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

import plrs_jax
from train import bookkeeping
from train import cli
from train import config_validation
from train import engine
from train import input_pipeline
from train import mlr_snet_file
from train import plots
from train import workdir as workdir_lib
from train.configs import base


def model_optimizer(phi: Any, gamma: Any,
                    weight_decay: float) -> optax.GradientTransformation:
  """The model's optimizer at net `phi`: SGD with coupled weight decay at
  MLR-SNet's rate (its state: `rate_state`).
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
  """Adam on phi with weight decay added to the gradient, as PyTorch's: the
  decay alone gets Adam's normalised step, not lr * wd * phi.
    >>> from train.configs import meta_train_digits
    >>> tx, phi = meta_optimizer(meta_train_digits.get_config()), jnp.ones(2)
    >>> updates, _ = tx.update(jnp.zeros(2), tx.init(phi), phi)
    >>> updates.round(6)
    Array([-0.001, -0.001], dtype=float32)
  """
  return optax.chain(optax.add_decayed_weights(config.meta_weight_decay),
                     optax.adam(config.meta_learning_rate))


def model_step(carry: dict[str, Any], batch: dict[str, jax.Array], *,
               apply_fn: Any, weight_decay: float, inputs: engine.StepConstants
               ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
  """`engine.train_step` at the current net; `carry` holds the train
  state's arrays (`engine.carry`), 'phi', 'phi_opt_state' and 'snapshots'.
  The metrics' 'lr' is the rate applied."""
  tx = optax.with_extra_args_support(model_optimizer(
      carry['phi'], rate_state(carry['opt_state']).gamma, weight_decay))
  state, metrics = engine.train_step(
      engine.from_carry(carry, apply_fn, tx), batch, inputs)
  return {**carry, **engine.carry(state)}, {
      **metrics, 'lr': rate_state(state.opt_state).rate}


def meta_step(carry: dict[str, Any], batch: dict[str, jax.Array],
              held_out: dict[str, jax.Array], *, apply_fn: Any,
              weight_decay: float, meta_optimizer: optax.GradientTransformation,
              meta_batch_size: int, inputs: engine.StepConstants,
              meta_key: jax.Array
              ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
  """One Adam step of phi on the meta loss of this step's batch, before
  `model_step` on the same carry and batch; the held-out batch is
  `meta_batch_size` rows of `held_out` drawn from `fold_in(meta_key, step)`.
  Returns the new carry and {'meta_loss'}."""
  (loss, _), grads = engine.batch_gradients(
      engine.from_carry(carry, apply_fn), batch, inputs)
  rows_key, meta_dropout = jax.random.split(
      jax.random.fold_in(meta_key, carry['step']))
  rows = jax.random.choice(rows_key, held_out['label'].shape[0],
                           (meta_batch_size,), replace=False)
  images = engine.normalize(held_out['image'][rows], inputs.mean, inputs.std)

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


class MetaTraining(NamedTuple):
  """A meta-training run before its first step: the dataset (without the
  held-out set), L_0 and gamma, the initial carry and the jitted steps."""
  config: ml_collections.ConfigDict
  dataset: input_pipeline.Dataset
  held_out: dict[str, jax.Array]
  model: Any
  steps_per_epoch: int
  num_steps: int
  initial_loss: float
  gamma: float
  carry: dict[str, Any]
  model_step: Any
  meta_step: Any
  evaluate: Any


def prepare(config: ml_collections.ConfigDict) -> MetaTraining:
  """The `MetaTraining` of `config`; ConfigError for a field it cannot use."""
  config_validation.validate_meta_train(config)
  dataset = input_pipeline.dataset_from_config(config)
  dataset, held_out = input_pipeline.hold_out(dataset, config.num_meta,
                                              config.split_seed)
  steps_per_epoch = input_pipeline.steps_per_epoch(dataset, config.batch_size)
  model = config_validation.model(config, dataset.num_classes)
  keys = engine.run_keys(config.seed)
  phi_key, meta_key = jax.random.split(keys.schedule)
  inputs = engine.StepConstants(dataset.mean, dataset.std, None, keys.dropout)
  initial = engine.create_train_state(keys.init, model, dataset.image_shape,
                                      optax.identity())
  eval_sums = jax.jit(functools.partial(engine.eval_sums, inputs=inputs))

  def evaluate(state, split):
    return engine.evaluate(
        lambda batch: eval_sums(state, batch), input_pipeline.eval_batches(
            dataset, batch_size=config.eval_batch_size, split=split), split)

  initial_loss = engine.initial_loss(evaluate, keys, model,
                                     dataset.image_shape)
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
                inputs=inputs)
  return MetaTraining(
      config=config, dataset=dataset,
      held_out={k: jax.device_put(v) for k, v in held_out.items()},
      model=model, steps_per_epoch=steps_per_epoch,
      num_steps=config.num_epochs * steps_per_epoch,
      initial_loss=initial_loss, gamma=gamma, carry=carry,
      model_step=jax.jit(functools.partial(model_step, **common),
                         donate_argnums=0),
      meta_step=jax.jit(functools.partial(
          meta_step, meta_optimizer=meta_tx,
          meta_batch_size=config.meta_batch_size, meta_key=meta_key,
          **common), donate_argnums=0),
      evaluate=evaluate)


class MetaTrainResult(NamedTuple):
  """The final carry on the host, the snapshots' file, L_0, gamma and the
  last epoch's record."""
  carry: dict[str, Any]
  nets: pathlib.Path
  initial_loss: float
  gamma: float
  metrics: dict[str, Any]


@bookkeeping.closes_runs
def meta_train(config: ml_collections.ConfigDict,
               workdir: str) -> MetaTrainResult:
  """Meta-trains, logs, checkpoints every epoch and resumes; writes the net.
  The config is checked before anything is written; a rerun resumes (another
  config: WorkdirError), a finished one writes its net and figure again."""
  workdir = workdir_lib.check_path(workdir)
  training = prepare(config)
  steps_per_epoch = training.steps_per_epoch
  run = bookkeeping.open_run(
      workdir, config, lambda: training.carry,
      check_resume=bookkeeping.refusing_changes(
          workdir, config, base.meta_train_config()),
      num_steps=training.num_steps, keep_checkpoints=2)
  print(f'L_0 = {training.initial_loss:.4f} (mean initial training loss), '
        f'gamma = {training.gamma:.4f}.')
  if run.finished:
    print(f'The run in {workdir} is finished ({run.step} steps): its net and '
          'figure are written again, nothing is trained.')
  batches = input_pipeline.train_batches(
      training.dataset, global_batch_size=config.batch_size,
      seed=engine.run_keys(config.seed).data_seed, start_step=run.step,
      num_steps=training.num_steps)
  progress = run.enter_context(tqdm.tqdm(
      total=training.num_steps, initial=run.step, unit='step',
      disable=not config.progress, dynamic_ncols=True, file=sys.stderr))
  carry, pending, epoch, summary = run.state, [], [], {}
  for step in range(run.step + 1, training.num_steps + 1):
    batch, meta = next(batches), {}
    if step % config.t_val == 0:
      carry, meta = training.meta_step(carry, batch, training.held_out)
    carry, metrics = training.model_step(carry, batch)
    pending.append({'step': step, **metrics, **meta})
    progress.update()
    epoch_end = step % steps_per_epoch == 0
    if step % config.log_every_steps and not epoch_end:
      continue
    # The steps' only device-to-host transfer: every step's metrics since
    # the last one.
    for record in jax.device_get(pending):
      epoch.append(record)
      run.log.write(**_step_record(record))
    pending = []
    progress.set_postfix(loss=f'{float(epoch[-1]["loss"]):.4f}',
                         lr=f'{float(epoch[-1]["lr"]):.4g}')
    if not epoch_end:
      continue
    state = engine.from_carry(carry, training.model.apply)
    summary = {
        'epoch': step // steps_per_epoch, 'step': step,
        **{f'train_{k}': float(np.mean([r[k] for r in epoch]))
           for k in ('loss', 'accuracy')},
        **training.evaluate(state, 'test'),
        'gamma': training.gamma}
    run.log.write(**summary)
    carry['snapshots'] = _kept_as_snapshot(carry, summary['epoch'],
                                           config.snapshot_epochs)
    run.save(step, carry)
    progress.write(
        f'epoch {summary["epoch"]}: train loss {summary["train_loss"]:.4f}, '
        f'test accuracy {summary["test_accuracy"]:.4f}, last rate '
        f'{epoch[-1]["lr"]:.4g}')
    epoch = []
  if not summary:
    epochs = [r for r in workdir_lib.read_metrics(workdir / 'metrics.jsonl')
              if 'epoch' in r]
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
                         initial_loss=training.initial_loss,
                         gamma=training.gamma, metrics=summary)


def _step_record(metrics: dict[str, Any]) -> dict[str, Any]:
  """A step's line of metrics.jsonl, from the step's metrics on the host."""
  meta = ({'meta_loss': float(metrics['meta_loss'])}
          if 'meta_loss' in metrics else {})
  return {'step': metrics['step'], 'lr': float(metrics['lr']),
          'train_loss': float(metrics['loss']), **meta}


def _kept_as_snapshot(carry: dict[str, Any], epoch: int,
                      snapshot_epochs: tuple[int, ...]) -> Any:
  """The carry's snapshots, phi kept as snapshot j after snapshot_epochs[j]."""
  snapshots = carry['snapshots']
  for j, snapshot_epoch in enumerate(snapshot_epochs):
    if snapshot_epoch == epoch:
      snapshots = jax.tree.map(lambda kept, leaf, j=j: kept.at[j].set(leaf),
                               snapshots, carry['phi'])
  return snapshots


def main():
  result = cli.run(meta_train)
  if result.metrics:
    print(f'Last epoch: test accuracy {result.metrics["test_accuracy"]:.4f}.')
  print('Transfer it: python -m train --config.optimizer=mlr_snet '
        f'--config.mlr_snet.checkpoint={result.nets} --workdir=...')


if __name__ == '__main__':
  cli.define_flags('meta_train_digits.py', 'Directory for the net, metrics, '
                   'checkpoints and the figure. Running again resumes.')
  cli.start(main)
