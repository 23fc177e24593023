"""Seeds of one config as one vmapped, scanned program: seed s computes what
`--config.seed=s` does; on CPU use `model_kwargs={'conv': 'im2col'}`."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from train import config_validation
from train import engine
from train import im2col
from train import input_pipeline
from train import optimizers


def _stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


class SeedRunner:
  """Trains seeds of one config, vmapped: `train_epoch(carry, keys, rows)`
  (jitted, the carry donated) an epoch of `rows` (S, steps, batch) indices."""

  def __init__(self, config: ml_collections.ConfigDict, *,
               dataset: input_pipeline.Dataset | None = None):
    config_validation.validate(config)
    self.config = config
    self.dataset = dataset or input_pipeline.dataset_from_config(config)
    self.steps_per_epoch = input_pipeline.steps_per_epoch(self.dataset,
                                                          config.batch_size)
    self.num_steps = config.num_epochs * self.steps_per_epoch
    # Each seed normalises with its own batch: no cross-device axis.
    self.model = config_validation.model(config, self.dataset.num_classes)
    # Padded for evaluation (MLR-SNet's L_0); training reads the real rows.
    self._train = _device_split(self.dataset.train, config.eval_batch_size)
    self._test = _device_split(self.dataset.test, config.eval_batch_size)
    self._inputs = engine.Inputs(self.dataset.mean, self.dataset.std)
    self.train_epoch = jax.jit(jax.vmap(self._train_epoch_one),
                               donate_argnums=0)
    # One seed at a time at the top level, where XLA's convolutions are fast.
    self._eval_model = (self.model.clone(conv=im2col.CONVS['xla'])
                        if hasattr(self.model, 'conv') else self.model)
    self._evaluate_split = jax.jit(self._evaluate_one, static_argnums=1)
    self._evaluate_seed = jax.jit(lambda carry, seed: self._evaluate_one(
        jax.tree.map(lambda x: x[seed], carry)))

  def optimizer(self, schedule_key: jax.Array, initial_loss: jax.Array):
    """The optimizer of a seed's `schedule_key` and L_0 (MLR-SNet's)."""
    schedule = optimizers.create_schedule(
        self.config.schedule, key=schedule_key,
        steps_per_epoch=self.steps_per_epoch, num_steps=self.num_steps)
    return optimizers.create_optimizer(
        self.config, schedule, self.steps_per_epoch,
        initial_loss=initial_loss, num_classes=self.dataset.num_classes)

  def init(self, seeds: Sequence[int]) -> tuple[dict[str, Any], Any]:
    """(carry, keys) of `seeds`, stacked, each initialised (and MLR-SNet's
    L_0 measured) as `train_and_evaluate` does."""
    carries, keys = [], []
    for seed in seeds:
      run = engine.run_keys(seed)
      initial_loss = jnp.float32(jnp.nan)  # Read by MLR-SNet only.
      if optimizers.needs_initial_loss(self.config):
        initial_loss = jnp.float32(engine.initial_loss(
            lambda state, split: self._evaluate_split(engine.carry(state),
                                                      split),
            run, self.model, self.dataset.image_shape))
      state = engine.create_train_state(
          run.init, self.model, self.dataset.image_shape,
          self.optimizer(run.schedule, initial_loss))
      carries.append(engine.carry(state))
      keys.append((run.schedule, run.augment, run.dropout, initial_loss))
    return _stack(carries), _stack(keys)

  def rows(self, seeds: Sequence[int], epoch: int) -> jax.Array:
    """(S, steps, batch) indices of the training examples of `epoch`."""
    size, batch = len(self.dataset.train), self.config.batch_size
    return jnp.asarray(np.stack([
        input_pipeline.epoch_order(size, engine.run_keys(s).data, epoch)[
            :self.steps_per_epoch * batch].reshape(-1, batch)
        for s in seeds]))

  def _train_epoch_one(self, carry, keys, rows):
    schedule_key, augment_key, dropout_key, initial_loss = keys
    tx = self.optimizer(schedule_key, initial_loss)
    inputs = engine.Inputs(self.dataset.mean, self.dataset.std,
                           augment_key if self.config.augment else None,
                           dropout_key)
    images, labels, _ = self._train
    positions = jnp.arange(self.config.batch_size, dtype=jnp.int32)

    def step(carry, index):
      batch = {'image': images[index], 'label': labels[index],
               'index': positions}
      state, metrics = engine.train_step(
          engine.from_carry(carry, self.model.apply, tx), batch, inputs)
      return engine.carry(state), metrics

    carry, per_step = jax.lax.scan(step, carry, rows)
    return carry, {**{name: value[-1] for name, value in per_step.items()
                      if name not in ('loss', 'accuracy')},
                   'train_loss': per_step['loss'].mean(),
                   'train_accuracy': per_step['accuracy'].mean(),
                   'lr': per_step['lr'], 'step_loss': per_step['loss']}

  def evaluate(self, carry: dict[str, Any]) -> dict[str, jax.Array]:
    """Each seed's 'test_loss' and 'test_accuracy', stacked."""
    return _stack([self._evaluate_seed(carry, seed)
                   for seed in range(jax.tree.leaves(carry)[0].shape[0])])

  def _evaluate_one(self, carry, split: str = 'test') -> dict[str, jax.Array]:
    state = engine.from_carry(carry, self._eval_model.apply)
    arrays = {'train': self._train, 'test': self._test}[split]
    size = self.config.eval_batch_size

    def one(sums, start):
      rows = {name: jax.lax.dynamic_slice_in_dim(x, start, size)
              for name, x in zip(('image', 'label', 'mask'), arrays)}
      return jax.tree.map(jnp.add, sums,
                          engine.eval_sums(state, rows, self._inputs)), None

    zero = dict.fromkeys(('loss', 'correct', 'count'), jnp.float32(0.0))
    sums, _ = jax.lax.scan(one, zero, jnp.arange(0, len(arrays[0]), size))
    return {f'{split}_loss': sums['loss'] / sums['count'],
            f'{split}_accuracy': sums['correct'] / sums['count']}

  def run(self, seeds: Sequence[int], *,
          progress: Any = None) -> dict[str, np.ndarray]:
    """Per epoch (S, num_epochs) metrics, and per step (S, num_steps) 'lr' and
    'step_loss', of `seeds`; `progress(epoch)` runs as each epoch ends."""
    carry, keys = self.init(seeds)
    epochs = []
    for epoch in range(self.config.num_epochs):
      carry, metrics = self.train_epoch(carry, keys, self.rows(seeds, epoch))
      metrics.update(self.evaluate(carry))
      epochs.append(metrics)
      if progress is not None:
        jax.block_until_ready(metrics)
        progress(epoch + 1)
    # One transfer at the end: nothing above waits for the host.
    epochs, self.final = jax.device_get((epochs, carry))
    per_step = ('lr', 'step_loss')  # After the per-epoch metrics.
    return {name: (np.concatenate if name in per_step else np.stack)(
                [m[name] for m in epochs], axis=1)
            for name in sorted(epochs[0], key=per_step.__contains__)}


def _device_split(split, multiple: int = 1) -> tuple[jax.Array, ...]:
  """Images, labels and a mask of the real rows, padded to a `multiple`."""
  images, labels = input_pipeline.as_arrays(split)
  size = len(labels)
  padded = -size % multiple
  images, labels = (np.concatenate([x, x[[0] * padded]])
                    for x in (images, labels))
  mask = np.arange(size + padded) < size
  return tuple(map(jax.device_put, (images, labels, mask.astype(np.float32))))


def train_seeds(config: ml_collections.ConfigDict, seeds: Sequence[int], *,
                dataset: input_pipeline.Dataset | None = None,
                sequential: bool = False) -> dict[str, np.ndarray]:
  """`SeedRunner.run` of `seeds`; `sequential` runs them one after another
  through the same code (S = 1), which agrees to float tolerance.
    >>> from train.configs import default
    >>> config = default.get_config()
    >>> config.num_epochs, config.batch_size = 1, 256
    >>> config.model_kwargs = {'conv': 'im2col'}
    >>> out = train_seeds(config, [0, 1])
    >>> out['test_accuracy'].shape, out['lr'].shape
    ((2, 1), (2, 5))
  """
  runner = SeedRunner(config, dataset=dataset)
  if not sequential:
    return runner.run(seeds)
  runs = [runner.run([s]) for s in seeds]
  return {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}
