"""The training step every program runs: the app, the multi-seed runner, the
benchmarks.

One derivation of a run's keys (`run_keys`), one train-mode loss
(`train_loss`), one step (`train_step`) and one evaluation (`eval_sums`).
The app (train.py) pmaps the step over devices with `axis_name='batch'`;
the multi-seed runner (seeds.py) vmaps it over seeds and scans it over an
epoch's steps; the benchmarks time it. Whatever runs it, seed s trains with
the same rates, initial parameters, data order, augmentation and dropout.

The optimizer sees `params`, `loss=` and `value=` (the batch's training loss,
averaged over replicas) on every update, as optax's
`GradientTransformationExtraArgs` allows, so transforms that read the loss or
the parameters (optax.contrib.reduce_on_plateau's `value`, AutoDrop,
two-regime training, MLR-SNet's `loss`) need no loop code of their own.
"""

from typing import Any, NamedTuple

from flax.training import train_state
import jax
import jax.numpy as jnp
import optax

from train import optimizers


class RunKeys(NamedTuple):
  """The randomness of run `seed`, one stream per use.

  Attributes:
    schedule: the learning-rate schedule's key (PLRS draws from it).
    init: the parameters' initialisation key.
    augment: crop-and-flip augmentation, folded with the step and the
      example's position in the global batch.
    dropout: dropout, folded with the step and the replica.
    data: the seed of the data order (grain's shuffle, see input_pipeline).
  """
  schedule: jax.Array
  init: jax.Array
  augment: jax.Array
  dropout: jax.Array
  data: int


def run_keys(seed: int) -> RunKeys:
  """The keys of run `seed` (`config.seed`).

  Parameters are initialised from an 'rbg' key: initialisation draws once,
  on one device, and needs none of threefry's counter-based guarantees; the
  'rbg' generator compiles about 4x faster there (3 s against 14 s for
  ResNet-8 on two CPU cores).

  Example:
    >>> keys = run_keys(0)
    >>> keys.data, jax.random.key_impl(keys.init)
    (0, 'rbg')
  """
  schedule, augment, dropout = jax.random.split(jax.random.key(seed), 3)
  return RunKeys(schedule=schedule, init=jax.random.key(seed, impl='rbg'),
                 augment=augment, dropout=dropout, data=seed)


class TrainState(train_state.TrainState):
  batch_stats: Any


def create_train_state(key: jax.Array, model: Any,
                       image_shape: tuple[int, ...],
                       tx: optax.GradientTransformation) -> TrainState:
  """Initialises parameters, BatchNorm statistics and optimizer state.

  Example:
    >>> from train import models
    >>> state = create_train_state(run_keys(0).init,
    ...                            models.create_model('resnet8', 10),
    ...                            (8, 8, 1), optax.sgd(0.1))
    >>> int(state.step), sorted(state.params)[:2]
    (0, ['classifier', 'stage1_block0'])
  """
  variables = jax.jit(lambda k, x: model.init(k, x, train=False))(
      key, jnp.zeros((1, *image_shape), jnp.float32))
  return TrainState.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=optax.with_extra_args_support(tx))


def normalize(images: jax.Array, mean, std) -> jax.Array:
  """uint8 images to float, standardised per channel.

  Example:
    >>> normalize(jnp.array([[0], [255]], jnp.uint8), (127.5,), (127.5,))
    Array([[-1.],
           [ 1.]], dtype=float32)
  """
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (images.astype(jnp.float32) - mean) / std


def augment(images: jax.Array, positions: jax.Array, key: jax.Array,
            padding: int = 4) -> jax.Array:
  """Pads by `padding`, crops back at random and flips half the images.

  Each image draws from `fold_in(key, position in the global batch)`, so the
  result does not depend on how the batch is split over devices or hosts.

  Args:
    images: (batch, height, width, channels).
    positions: (batch,) positions of the rows in the global batch.
    key: this step's augmentation key.
    padding: zero padding on each side before the crop.

  Returns:
    The augmented images.

  Example:
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


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels.

  Example:
    >>> cross_entropy(jnp.zeros((1, 4)), jnp.array([2]))
    Array([1.3862944], dtype=float32)
  """
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_loss(params: Any, batch_stats: Any, apply_fn: Any,
               images: jax.Array, labels: jax.Array,
               dropout_rng: jax.Array | None = None):
  """The mean training-mode cross-entropy, as SGD sees it.

  BatchNorm normalises with the batch's statistics (across replicas when the
  model's `bn_axis_name` is bound) and dropout is on.

  Args:
    params: the model's parameters.
    batch_stats: its BatchNorm statistics.
    apply_fn: the model's `apply`.
    images: normalised float images.
    labels: integer labels.
    dropout_rng: the dropout key (None: the model has no dropout).

  Returns:
    (loss, (logits, updated batch_stats)).

  Example:
    >>> from train import models
    >>> model = models.create_model('resnet8', 10)
    >>> x = jnp.zeros((2, 8, 8, 1))
    >>> v = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
    >>> loss_fn = jax.jit(train_loss, static_argnums=2)
    >>> loss, (logits, stats) = loss_fn(v['params'], v['batch_stats'],
    ...                                 model.apply, x, jnp.array([0, 1]))
    >>> loss.shape, logits.shape
    ((), (2, 10))
  """
  logits, updates = apply_fn(
      {'params': params, 'batch_stats': batch_stats}, images, train=True,
      mutable=['batch_stats'],
      rngs={} if dropout_rng is None else {'dropout': dropout_rng})
  loss = cross_entropy(logits, labels).mean()
  return loss, (logits, updates.get('batch_stats', {}))


def batch_gradients(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    augment_key: jax.Array | None,
    dropout_key: jax.Array,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    axis_name: str | None = None,
):
  """The batch's training loss and its gradient, as `train_step` sees them.

  The images are normalised and augmented, and dropout drawn, as the step
  `state.step` does, so a caller that needs the gradient of this step
  before the update (MLR-SNet's meta-training) gets the very same one.

  Args:
    state: the train state (its `step`, `params`, `batch_stats`,
      `apply_fn`).
    batch: 'image' (uint8), 'label' and 'index', as `train_step` takes it.
    augment_key: key for crop-and-flip augmentation, or None for none.
    dropout_key: key for dropout.
    mean: per-channel image mean.
    std: per-channel image standard deviation.
    axis_name: the pmap axis (None: one replica); it only picks this
      replica's dropout masks. Nothing is averaged over replicas here.

  Returns:
    ((loss, (logits, updated batch_stats)), grads) of this replica's rows.

  Example: SGD at rate 1 takes exactly this gradient.

    >>> from train import models
    >>> model = models.create_model('mlp', 3, hidden=(4,))
    >>> state = create_train_state(run_keys(1).init, model, (2, 2, 1),
    ...                            optax.sgd(1.0))
    >>> kwargs = dict(augment_key=None, dropout_key=run_keys(1).dropout,
    ...               mean=(0.,), std=(1.,))
    >>> batch = {'image': jnp.ones((2, 2, 2, 1), jnp.uint8),
    ...          'label': jnp.array([0, 2]), 'index': jnp.arange(2)}
    >>> _, grads = batch_gradients(state, batch, **kwargs)
    >>> stepped, _ = train_step(state, batch,
    ...                         rate=optax.constant_schedule(1.0), **kwargs)
    >>> bias = lambda s: s.params['classifier']['bias']
    >>> bool(jnp.allclose(bias(stepped),
    ...                   bias(state) - grads['classifier']['bias']))
    True
  """
  images = normalize(batch['image'], mean, std)
  if augment_key is not None:
    images = augment(images, batch['index'],
                     jax.random.fold_in(augment_key, state.step))
  # Dropout masks differ per replica (they cannot be split by example).
  dropout_rng = jax.random.fold_in(
      jax.random.fold_in(dropout_key, state.step),
      jax.lax.axis_index(axis_name) if axis_name else 0)
  return jax.value_and_grad(train_loss, has_aux=True)(
      state.params, state.batch_stats, state.apply_fn, images,
      batch['label'], dropout_rng)


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    rate: optax.Schedule,
    augment_key: jax.Array | None,
    dropout_key: jax.Array,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on a batch (this replica's rows under pmap).

  Args:
    state: the train state.
    batch: 'image' (uint8), 'label', and 'index' (the rows' positions in the
      global batch, which key their augmentation).
    rate: the step's learning rate as a function of the step, for the logs
      (`optimizers.optimizer_rate`); the optimizer holds the schedule. An
      optimizer that reports its own rate (MLR-SNet) replaces it.
    augment_key: key for crop-and-flip augmentation, or None for none.
    dropout_key: key for dropout.
    mean: per-channel image mean.
    std: per-channel image standard deviation.
    axis_name: the pmap axis whose replicas share the batch (None: one
      replica). Gradients, the loss and the metrics are averaged over it.

  Returns:
    The new state and this step's metrics: 'loss' and 'accuracy' of the
    global batch, 'lr' (the rate that was applied, an optimizer's scale
    included) and what the optimizer reports (`optimizers.optimizer_metrics`;
    its 'lr', if any, is the rate it applied).

  Example:
    >>> import functools
    >>> from train import models
    >>> state = create_train_state(run_keys(0).init,
    ...                            models.create_model('mlp', 10, hidden=(8,)),
    ...                            (8, 8, 1), optax.sgd(0.25))
    >>> batch = {'image': jnp.zeros((4, 8, 8, 1), jnp.uint8),
    ...          'label': jnp.arange(4), 'index': jnp.arange(4)}
    >>> step = jax.jit(functools.partial(
    ...     train_step, rate=optax.constant_schedule(0.25), augment_key=None,
    ...     dropout_key=run_keys(0).dropout, mean=(0.,), std=(1.,)))
    >>> state, metrics = step(state, batch)
    >>> int(state.step), float(metrics['lr'])
    (1, 0.25)
  """
  step = state.step
  (loss, (logits, batch_stats)), grads = batch_gradients(
      state, batch, augment_key=augment_key, dropout_key=dropout_key,
      mean=mean, std=std, axis_name=axis_name)
  metrics = {'loss': loss,
             'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label'])}
  if axis_name:
    grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
  updates, opt_state = state.tx.update(
      grads, state.opt_state, state.params, loss=metrics['loss'],
      value=metrics['loss'])
  new_state = state.replace(
      step=step + 1, params=optax.apply_updates(state.params, updates),
      opt_state=opt_state, batch_stats=batch_stats)
  metrics['lr'] = rate(step) * optimizers.optimizer_metrics(
      state.opt_state).get('optimizer_scale', 1.0)
  metrics.update(optimizers.optimizer_metrics(opt_state))
  return new_state, metrics


def eval_sums(state: TrainState, batch: dict[str, jax.Array], *,
              mean: tuple[float, ...],
              std: tuple[float, ...]) -> dict[str, jax.Array]:
  """Sums of loss and correct predictions over the batch's real rows.

  BatchNorm uses its running averages. Rows with `mask` 0 (padding) count
  for nothing; a batch without 'mask' counts every row. A pmapped caller
  psums the result.

  Example:
    >>> from train import models
    >>> state = create_train_state(run_keys(0).init,
    ...                            models.create_model('mlp', 10, hidden=(8,)),
    ...                            (8, 8, 1), optax.sgd(0.1))
    >>> batch = {'image': jnp.zeros((3, 8, 8, 1), jnp.uint8),
    ...          'label': jnp.arange(3), 'mask': jnp.array([1., 1., 0.])}
    >>> float(eval_sums(state, batch, mean=(0.,), std=(1.,))['count'])
    2.0
  """
  images = normalize(batch['image'], mean, std)
  logits = state.apply_fn(
      {'params': state.params, 'batch_stats': state.batch_stats}, images,
      train=False)
  mask = batch.get('mask', jnp.ones(batch['label'].shape, jnp.float32))
  return {
      'loss': jnp.sum(cross_entropy(logits, batch['label']) * mask),
      'correct': jnp.sum((jnp.argmax(logits, -1) == batch['label']) * mask),
      'count': jnp.sum(mask),
  }
