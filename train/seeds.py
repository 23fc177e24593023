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


def checked_steps_per_epoch(config: ml_collections.ConfigDict,
                            dataset: input_pipeline.Dataset) -> int:
  """The steps of an epoch of `config` on `dataset`, once the config, its
  model, schedule and optimizer are checked: a mistake is a ConfigError
  naming the field, before anything trains."""
  config_validation.validate(config)
  config_validation.model(config, dataset.num_classes)
  steps_per_epoch = input_pipeline.steps_per_epoch(dataset, config.batch_size)
  schedule = config_validation.build_or_config_error(
      'schedule', optimizers.create_schedule, config.schedule,
      key=jax.random.key(0), steps_per_epoch=steps_per_epoch,
      num_steps=config.num_epochs * steps_per_epoch)
  config_validation.build_or_config_error(
      'optimizer', optimizers.create_optimizer, config, schedule,
      steps_per_epoch, initial_loss=1.0, num_classes=dataset.num_classes)
  return steps_per_epoch


class SeedRunner:
  """Trains seeds of one config, vmapped: `train_epoch(carry, keys, rows)`
  (jitted, the carry donated) an epoch of `rows` (S, steps, batch) indices."""

  def __init__(self, config: ml_collections.ConfigDict, *,
               dataset: input_pipeline.Dataset | None = None):
    self.config = config
    self.dataset = dataset or input_pipeline.dataset_from_config(config)
    self.steps_per_epoch = checked_steps_per_epoch(config, self.dataset)
    self.num_steps = config.num_epochs * self.steps_per_epoch
    # Each seed normalises with its own batch: no cross-device axis.
    self.model = config_validation.model(config, self.dataset.num_classes)
    # Padded for evaluation (MLR-SNet's L_0); training reads the real rows.
    self._splits = {
        split: _device_split(source, config.eval_batch_size)
        for split, source in (('train', self.dataset.train),
                              ('test', self.dataset.test),
                              ('validation', self.dataset.validation))
        if source is not None}
    self._train = self._splits['train']
    self.tuned_on = input_pipeline.tuning_split(self.dataset)
    self._inputs = engine.StepConstants(self.dataset.mean, self.dataset.std)
    self.train_epoch = jax.jit(jax.vmap(self._train_epoch_one),
                               donate_argnums=0)
    # One seed at a time at the top level, where XLA's convolutions are fast.
    self._eval_model = (self.model.clone(conv=im2col.CONVS['xla'])
                        if hasattr(self.model, 'conv') else self.model)
    self._evaluate_split = jax.jit(self._evaluate_one, static_argnums=1)
    self._evaluate_seed = jax.jit(
        lambda carry, seed, split: self._evaluate_one(
            jax.tree.map(lambda x: x[seed], carry), split), static_argnums=2)
    self._recomputed_seed = jax.jit(
        lambda carry, seed, rows: self._recomputed_one(
            jax.tree.map(lambda x: x[seed], carry), rows))

  def optimizer(self, schedule_key: jax.Array, initial_loss: jax.Array,
                rate_scale: float | jax.Array = 1.0):
    """The optimizer of a seed's `schedule_key` and L_0 (MLR-SNet's), its
    schedule multiplied by `rate_scale`."""
    unscaled = optimizers.create_schedule(
        self.config.schedule, key=schedule_key,
        steps_per_epoch=self.steps_per_epoch, num_steps=self.num_steps)
    schedule = lambda count: rate_scale * unscaled(count)
    return optimizers.create_optimizer(
        self.config, schedule, self.steps_per_epoch,
        initial_loss=initial_loss, num_classes=self.dataset.num_classes)

  def init(self, seeds: Sequence[int],
           rate_scales: Sequence[float] | None = None
           ) -> tuple[dict[str, Any], Any]:
    """(carry, keys) of `seeds`, stacked, each initialised (and MLR-SNet's
    L_0 measured) as `train_and_evaluate` does; see `run`'s `rate_scales`."""
    carries, keys = [], []
    scales = [1.0] * len(seeds) if rate_scales is None else rate_scales
    for seed, rate_scale in zip(seeds, scales, strict=True):
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
      keys.append((run.schedule, run.augment, run.dropout, initial_loss,
                   jnp.float32(rate_scale)))
    return _stack(carries), _stack(keys)

  def rows(self, seeds: Sequence[int], epoch: int) -> jax.Array:
    """(S, steps, batch) indices of the training examples of `epoch`."""
    size, batch = len(self.dataset.train), self.config.batch_size
    return jnp.asarray(np.stack([
        input_pipeline.epoch_order(size, engine.run_keys(s).data_seed, epoch)[
            :self.steps_per_epoch * batch].reshape(-1, batch)
        for s in seeds]))

  def _train_epoch_one(self, carry, keys, rows):
    schedule_key, augment_key, dropout_key, initial_loss, rate_scale = keys
    tx = self.optimizer(schedule_key, initial_loss, rate_scale)
    inputs = engine.StepConstants(
        self.dataset.mean, self.dataset.std,
        augment_key if self.config.augment else None, dropout_key)
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

  def evaluate(self, carry: dict[str, Any],
               split: str = 'test') -> dict[str, jax.Array]:
    """Each seed's '{split}_loss' and '{split}_accuracy', stacked."""
    return _stack([self._evaluate_seed(carry, seed, split)
                   for seed in range(jax.tree.leaves(carry)[0].shape[0])])

  def recomputed_test(self, carry: dict[str, Any],
                      rows: jax.Array) -> dict[str, jax.Array]:
    """`evaluate` on the test split with BatchNorm's statistics recomputed
    over the training batches `rows` (S, batches, batch) of each seed."""
    return _stack([self._recomputed_seed(carry, seed, rows[seed])
                   for seed in range(len(rows))])

  def _recomputed_one(self, carry, rows) -> dict[str, jax.Array]:
    state = engine.from_carry(carry, self._eval_model.apply)
    stats = engine.recomputed_batch_stats(state, self._train[0][rows],
                                          self._inputs)
    return self._evaluate_one({**carry, 'batch_stats': stats}, 'test')

  def _evaluate_one(self, carry, split: str = 'test') -> dict[str, jax.Array]:
    state = engine.from_carry(carry, self._eval_model.apply)
    arrays = self._splits[split]
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
          rate_scales: Sequence[float] | None = None, final_test: bool = False,
          progress: Any = None) -> dict[str, np.ndarray]:
    """Per epoch (S, num_epochs) metrics (evaluated on `tuned_on`), and per
    step (S, num_steps) 'lr' and 'step_loss', of `seeds`, each run's
    schedule multiplied by its `rate_scales` entry (default 1). With
    `final_test` and a validation split, also (S,) 'final_test_accuracy' and
    'final_test_loss' after the last step, and for a model with BatchNorm
    'final_test_accuracy_recomputed_bn' (statistics over `engine.BN_BATCHES`
    training batches). `progress(epoch)` runs as each epoch ends."""
    carry, keys = self.init(seeds, rate_scales)
    epochs = []
    for epoch in range(self.config.num_epochs):
      carry, metrics = self.train_epoch(carry, keys, self.rows(seeds, epoch))
      metrics.update(self.evaluate(carry, self.tuned_on))
      epochs.append(metrics)
      if progress is not None:
        jax.block_until_ready(metrics)
        progress(epoch + 1)
    final = {}
    if final_test and self.tuned_on == 'validation':
      final = {f'final_{k}': v for k, v in self.evaluate(carry).items()}
      if jax.tree.leaves(carry['batch_stats']):
        rows = self.rows(seeds, self.config.num_epochs)[:, :engine.BN_BATCHES]
        final['final_test_accuracy_recomputed_bn'] = self.recomputed_test(
            carry, rows)['test_accuracy']
    # One transfer at the end: nothing above waits for the host.
    epochs, final, self.final = jax.device_get((epochs, final, carry))
    per_step = ('lr', 'step_loss')  # After the per-epoch metrics.
    return {**{name: (np.concatenate if name in per_step else np.stack)(
                   [m[name] for m in epochs], axis=1)
               for name in sorted(epochs[0], key=per_step.__contains__)},
            **final}


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
