"""The keys, loss, step and evaluation every program shares: the optimizer
sees `params`, `loss=` and `value=`, and reports through its state."""

import functools
from typing import Any, NamedTuple

from flax.training import train_state
import jax
import jax.numpy as jnp
import optax

from train import models


class RunKeys(NamedTuple):
  """Run `seed`'s keys of the schedule (PLRS draws from it), initialisation,
  augmentation and dropout, and the seed of the data order."""
  schedule: jax.Array
  init: jax.Array
  augment: jax.Array
  dropout: jax.Array
  data_seed: int


def run_keys(seed: int) -> RunKeys:
  """The keys of run `seed`; initialisation draws from an 'rbg' key, which
  compiles about 4x faster there than threefry.
    >>> run_keys(0).data_seed, jax.random.key_impl(run_keys(0).init)
    (0, 'rbg')
  """
  schedule, augment, dropout = jax.random.split(jax.random.key(seed), 3)
  return RunKeys(schedule=schedule, init=jax.random.key(seed, impl='rbg'),
                 augment=augment, dropout=dropout, data_seed=seed)


class StepConstants(NamedTuple):
  """Per-channel statistics, augmentation's (None: none) and dropout's keys."""
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment_key: jax.Array | None = None
  dropout_key: jax.Array | None = None


class TrainState(train_state.TrainState):
  batch_stats: Any


def create_train_state(key: jax.Array, model: Any, image_shape: tuple[int, ...],
                       tx: optax.GradientTransformation,
                       state_class: type[TrainState] = TrainState,
                       **fields) -> TrainState:
  """Initialises parameters, BatchNorm statistics and optimizer state;
  `fields` are those of a `state_class` derived from `TrainState`.
    >>> from train import models
    >>> state = create_train_state(run_keys(0).init, models.create_model(
    ...     'resnet8', 10), (8, 8, 1), optax.sgd(0.1))
    >>> int(state.step), sorted(state.params)[:2]
    (0, ['classifier', 'stage1_block0'])
  """
  variables = _init_variables(model, key, tuple(image_shape))
  return state_class.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=optax.with_extra_args_support(tx), **fields)


# Compiled once per model and image shape (Flax modules hash by their
# fields), not once per call: runners initialise many seeds.
@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_variables(model: Any, key: jax.Array, image_shape: tuple[int, ...]):
  return model.init(key, jnp.zeros((1, *image_shape), jnp.float32),
                    train=False)


_CARRIED = ('step', 'params', 'opt_state', 'batch_stats')


def carry(state: TrainState) -> dict[str, Any]:
  """The arrays of a train state, as a scan carries them (see `from_carry`)."""
  return {k: getattr(state, k) for k in _CARRIED}


def from_carry(arrays: dict[str, Any], apply_fn: Any,
               tx: Any = None) -> TrainState:
  """The train state of `carry`'s arrays (other keys of `arrays` ignored).
    >>> state = from_carry({'step': 3, 'params': {}, 'opt_state': (),
    ...                     'batch_stats': {}, 'phi': 0}, apply_fn=None)
    >>> carry(state)
    {'step': 3, 'params': {}, 'opt_state': (), 'batch_stats': {}}
  """
  return TrainState(apply_fn=apply_fn, tx=tx,
                    **{k: arrays[k] for k in _CARRIED})


def normalize(images: jax.Array, mean, std) -> jax.Array:
  """uint8 images to float, standardised per channel.
    >>> normalize(jnp.array([[0], [255]], jnp.uint8), (127.5,), (127.5,))
    Array([[-1.],
           [ 1.]], dtype=float32)
  """
  return ((images.astype(jnp.float32) - jnp.asarray(mean, jnp.float32))
          / jnp.asarray(std, jnp.float32))


def augment(images: jax.Array, positions: jax.Array, key: jax.Array,
            padding: int = 4) -> jax.Array:
  """Pads, crops back at random and flips half the images, each by its
  position in the global batch: the same however the batch is split.
    >>> out = augment(jnp.ones((2, 8, 8, 1)), jnp.arange(2), jax.random.key(0))
    >>> out.shape
    (2, 8, 8, 1)
  """
  height, width = images.shape[1:3]

  def one(image, position):
    crop_key, flip_key = jax.random.split(jax.random.fold_in(key, position))
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    dy, dx = jax.random.randint(crop_key, (2,), 0, 2 * padding + 1)
    image = jax.lax.dynamic_slice(padded, (dy, dx, 0),
                                  (height, width, image.shape[-1]))
    return jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)

  return jax.vmap(one)(images, positions)


def train_loss(params: Any, batch_stats: Any, apply_fn: Any,
               images: jax.Array, labels: jax.Array,
               dropout_rng: jax.Array | None = None):
  """The mean training-mode cross-entropy, as SGD sees it: BatchNorm with
  the batch's statistics, dropout on. Returns (loss, (logits, batch_stats)).
    >>> from train import models
    >>> model, x = models.create_model('resnet8', 10), jnp.zeros((2, 8, 8, 1))
    >>> v = model.init(jax.random.key(0), x, train=False)
    >>> loss, (logits, _) = train_loss(v['params'], v['batch_stats'],
    ...                                model.apply, x, jnp.array([0, 1]))
    >>> loss.shape, logits.shape
    ((), (2, 10))
  """
  logits, updates = apply_fn(
      {'params': params, 'batch_stats': batch_stats}, images, train=True,
      mutable=['batch_stats'],
      rngs={} if dropout_rng is None else {'dropout': dropout_rng})
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return loss.mean(), (logits, updates.get('batch_stats', {}))


def batch_gradients(state: TrainState, batch: dict[str, jax.Array],
                    inputs: StepConstants, axis_name: str | None = None):
  """((loss, (logits, batch_stats)), grads) of this replica's rows, nothing
  averaged, as step `state.step` sees them; SGD at rate 1 subtracts them.
    >>> from train import models
    >>> state = create_train_state(run_keys(1).init, models.create_model(
    ...     'mlp', 3, hidden=(4,)), (2, 2, 1), optax.sgd(1.0))
    >>> data = StepConstants((0.,), (1.,), None, run_keys(1).dropout)
    >>> batch = {'image': jnp.ones((2, 2, 2, 1), jnp.uint8),
    ...          'label': jnp.array([0, 2]), 'index': jnp.arange(2)}
    >>> _, grads = batch_gradients(state, batch, data)
    >>> stepped, _ = train_step(state, batch, data)
    >>> expected = jax.tree.map(jnp.subtract, state.params, grads)
    >>> jax.tree.all(jax.tree.map(jnp.allclose, stepped.params, expected))
    True
  """
  images = normalize(batch['image'], inputs.mean, inputs.std)
  if inputs.augment_key is not None:
    images = augment(images, batch['index'],
                     jax.random.fold_in(inputs.augment_key, state.step))
  # Dropout masks differ per replica (they cannot be split by example).
  dropout_rng = jax.random.fold_in(
      jax.random.fold_in(inputs.dropout_key, state.step),
      jax.lax.axis_index(axis_name) if axis_name else 0)
  return jax.value_and_grad(train_loss, has_aux=True)(
      state.params, state.batch_stats, state.apply_fn, images,
      batch['label'], dropout_rng)


def optimizer_metrics(opt_state: Any) -> dict[str, jax.Array]:
  """What an optimizer reports of its last update (its rate...): the `report`
  its state holds (train/optimizers.py's `with_report`), or nothing.
    >>> optimizer_metrics(optax.sgd(0.1).init(jnp.zeros(2)))
    {}
  """
  return dict(optax.tree.get(opt_state, 'report', {}))


def train_step(state: TrainState, batch: dict[str, jax.Array],
               inputs: StepConstants, axis_name: str | None = None
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One step on a batch of 'image', 'label' and 'index' (global positions),
  averaged over `axis_name`; metrics 'loss', 'accuracy' and the optimizer's
  (`optimizer_metrics`).
    >>> from train import models
    >>> state = create_train_state(run_keys(0).init, models.create_model(
    ...     'mlp', 10, hidden=(8,)), (8, 8, 1), optax.sgd(0.25))
    >>> batch = {'image': jnp.zeros((4, 8, 8, 1), jnp.uint8),
    ...          'label': jnp.arange(4), 'index': jnp.arange(4)}
    >>> data = StepConstants((0.,), (1.,), None, run_keys(0).dropout)
    >>> state, metrics = jax.jit(train_step)(state, batch, data)
    >>> int(state.step), sorted(metrics)
    (1, ['accuracy', 'loss'])
  """
  (loss, (logits, batch_stats)), grads = batch_gradients(
      state, batch, inputs, axis_name)
  metrics = {'loss': loss,
             'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label'])}
  if axis_name:
    grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
  updates, opt_state = state.tx.update(
      grads, state.opt_state, state.params, loss=metrics['loss'],
      value=metrics['loss'])
  new_state = state.replace(
      step=state.step + 1, params=optax.apply_updates(state.params, updates),
      opt_state=opt_state, batch_stats=batch_stats)
  return new_state, {**metrics, **optimizer_metrics(opt_state)}


def evaluation_params(state: TrainState) -> Any:
  """The parameters to evaluate: a schedule-free optimizer's averaged x
  (`optax.contrib.schedule_free_eval_params`; its gradients are taken at
  another point), else `state.params`.
    >>> params = {'w': jnp.ones(2)}
    >>> tx = optax.contrib.schedule_free_sgd(1.0)
    >>> state = TrainState.create(apply_fn=None, params=params, tx=tx,
    ...                           batch_stats={})
    >>> evaluation_params(state) is params
    False
  """
  free = [node for node in jax.tree.leaves(
      state.opt_state, is_leaf=lambda x: isinstance(
          x, optax.contrib.ScheduleFreeState))
          if isinstance(node, optax.contrib.ScheduleFreeState)]
  if not free:
    return state.params
  return optax.contrib.schedule_free_eval_params(free[0], state.params)


# Training batches over which BatchNorm's statistics are recomputed at a
# schedule-free optimizer's average (`recomputed_batch_stats`).
BN_BATCHES = 50


def recomputed_batch_stats(state: TrainState, batches: Any,
                           inputs: StepConstants) -> Any:
  """BatchNorm's statistics averaged over `batches` (each an 'image' array)
  at `evaluation_params`, in place of the running averages: each batch's
  mean and variance, as a training step sees them, weighted equally.
    >>> from train import models
    >>> model = models.create_model('resnet8', 10)
    >>> state = create_train_state(run_keys(0).init, model, (8, 8, 1),
    ...                            optax.sgd(0.1))
    >>> images = jnp.zeros((2, 4, 8, 8, 1), jnp.uint8)
    >>> constants = StepConstants((0.,), (1.,))
    >>> stats = recomputed_batch_stats(state, images, constants)
    >>> jax.tree.structure(stats) == jax.tree.structure(state.batch_stats)
    True
  """
  params = evaluation_params(state)
  zeros = jax.tree.map(jnp.zeros_like, state.batch_stats)

  def one(total, images):
    # From zero statistics one update leaves (1 - momentum) times the
    # batch's mean and variance: summed here, divided by that factor below.
    _, updated = state.apply_fn(
        {'params': params, 'batch_stats': zeros},
        normalize(images, inputs.mean, inputs.std), train=True,
        mutable=['batch_stats'])
    return jax.tree.map(jnp.add, total, updated['batch_stats']), None

  total, _ = jax.lax.scan(one, zeros, batches)
  return jax.tree.map(
      lambda x: x / (len(batches) * (1 - models.BN_MOMENTUM)), total)


def eval_sums(state: TrainState, batch: dict[str, jax.Array],
              inputs: StepConstants) -> dict[str, jax.Array]:
  """Sums of loss and correct predictions over the batch's rows whose
  `mask` is 1 (every row without one), BatchNorm at its running averages.
    >>> from train import models
    >>> state = create_train_state(run_keys(0).init, models.create_model(
    ...     'mlp', 10, hidden=(8,)), (8, 8, 1), optax.sgd(0.1))
    >>> batch = {'image': jnp.zeros((3, 8, 8, 1), jnp.uint8),
    ...          'label': jnp.arange(3), 'mask': jnp.array([1., 1., 0.])}
    >>> float(eval_sums(state, batch, StepConstants((0.,), (1.,)))['count'])
    2.0
  """
  logits = state.apply_fn(
      {'params': evaluation_params(state), 'batch_stats': state.batch_stats},
      normalize(batch['image'], inputs.mean, inputs.std), train=False)
  labels = batch['label']
  mask = batch.get('mask', jnp.ones(labels.shape, jnp.float32))
  return {'loss': jnp.sum(optax.softmax_cross_entropy_with_integer_labels(
              logits, labels) * mask),
          'correct': jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
          'count': jnp.sum(mask)}


def evaluate(sums_of: Any, batches: Any, split: str) -> dict[str, float]:
  """`{split}_loss` and `{split}_accuracy` over `batches`, `sums_of(batch)`
  being the batch's `eval_sums` (on the device until the end).
    >>> batches = [{'loss': 3.0, 'correct': 1.0, 'count': 2.0}] * 2
    >>> evaluate(lambda sums: sums, batches, 'test')
    {'test_loss': 1.5, 'test_accuracy': 0.5}
  """
  sums = jax.device_get(jax.tree.map(
      lambda *parts: sum(parts), *[sums_of(batch) for batch in batches]))
  count = float(sums['count'])
  return {f'{split}_loss': float(sums['loss']) / count,
          f'{split}_accuracy': float(sums['correct']) / count}


def initial_loss(evaluate: Any, keys: RunKeys, model: Any,
                 image_shape: tuple[int, ...]) -> float:
  """L_0 (MLR-SNet's gamma): the initial model's mean training loss in
  evaluation mode, as the official code measures it, by `evaluate`.
    >>> from train import models
    >>> initial_loss(lambda state, split: {f'{split}_loss': 2.3}, run_keys(0),
    ...              models.create_model('mlp', 10), (8, 8, 1))
    2.3
  """
  state = create_train_state(keys.init, model, image_shape, optax.identity())
  return float(evaluate(state, 'train')['train_loss'])
