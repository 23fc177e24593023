"""Many seeds of one digits training run as one jitted program.

`SeedTrainer` trains S seeds of a model at once: the per-seed state (PRNG
keys, parameters, BatchNorm statistics, optimizer state) carries a leading
axis of size S and every function is `jax.vmap`ped over it. Everything stays
on the device:

* the digits train and test splits are device arrays, closed over by the
  compiled functions;
* seed s reads epoch e in the order
  `jax.random.permutation(fold_in(data_key_s, e), n)`, and each step gathers
  its batch from the device arrays (the last incomplete batch is dropped, as in
  train/input_pipeline.py);
* one epoch is a `lax.scan` over its steps, compiled once for all epochs;
* the learning rate is written into `optax.inject_hyperparams(optax.sgd)`'s
  state at every step, `schedule(step)`, where the schedule is built inside
  the vmapped function from the seed's own schedule key, so PLRS draws
  different rates for every seed in the same program.

Convolutions are computed as im2col matrix products by default. XLA:CPU
rewrites a convolution into the layout its fast (Eigen) kernel needs only at
the top level of a program: its ConvCanonicalization pass visits
`module->entry_computation()` alone (openxla/xla,
xla/service/cpu/conv_canonicalization.cc). Inside `lax.scan`'s while loop the
weight-gradient convolutions that autodiff emits (dimension labels
`f01b_i01o->01bf`) keep their layout and run through the generic loop-nest
emitter, 10-50x slower: a ResNet-8 step on digits takes ~120 ms in a scan
against ~7 ms as a top-level jitted step. As pads, strided slices and one
`dot_general` the same convolution runs at full speed in the loop and vmaps
to a batched matrix product. `conv='xla'` keeps `lax.conv_general_dilated`.

Seed s uses the keys `python -m train` derives from `config.seed = s`
(schedule and parameter initialisation), so its PLRS rates and initial
parameters are those of that run; only the data order differs (grain's
shuffle there, `jax.random.permutation` here).

Running the same trainer on one seed at a time (`sequential=True`) gives the
same numbers as the vmapped run up to floating-point reassociation (the
batched products may sum in another order): the same rates, data and
initial parameters, parameters equal to ~1e-7 after the first steps. Over
many steps such last-bit differences can grow, as they do between any two
builds of one program (a ReLU input of ~1e-7 changes sign), so long runs agree
in distribution rather than bit for bit. tests/test_benchmarks_seeds.py
checks the agreement; benchmarks/seeds_vmap.py times the two.
"""

from collections.abc import Mapping, Sequence
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import workloads
from train import input_pipeline
from train import models
from train import train

# fold_in constant of the data-order stream, apart from train.py's 4 split keys.
_DATA_STREAM = 0x6461  # 'da'


class SeedState(NamedTuple):
  """Everything one seed carries from epoch to epoch (leading axis: seeds)."""
  params: Any
  batch_stats: Any
  opt_state: Any
  schedule_key: jax.Array
  data_key: jax.Array


class _ModelFns(NamedTuple):
  """A model as three pure functions, BatchNorm or not."""
  # init(key, images) -> (params, batch_stats)
  init: Any
  # apply_train(params, batch_stats, images) -> (logits, new_batch_stats)
  apply_train: Any
  # apply_eval(params, batch_stats, images) -> logits
  apply_eval: Any


def conv_im2col(lhs, rhs, window_strides, padding, lhs_dilation=None,
                rhs_dilation=None, dimension_numbers=None,
                feature_group_count=1, precision=None):
  """`lax.conv_general_dilated` for NHWC/HWIO as im2col and one matmul.

  Takes the arguments Flax's `nn.Conv` passes. The kh x kw shifted (and
  strided) views of the padded input are concatenated along the channels,
  in the (row, column, channel) order of `rhs.reshape(-1, out_features)`,
  and contracted with the kernel. Supports what the models of
  train/models.py use: 2-D, no dilation, one feature group.

  Args:
    lhs: (batch, height, width, in_features) input.
    rhs: (kh, kw, in_features, out_features) kernel.
    window_strides: (stride_h, stride_w).
    padding: 'SAME', 'VALID' or ((low, high), (low, high)).
    lhs_dilation: None or all ones.
    rhs_dilation: None or all ones.
    dimension_numbers: None or those of ('NHWC', 'HWIO', 'NHWC').
    feature_group_count: 1.
    precision: passed to the matrix product.

  Returns:
    The convolution, (batch, out_height, out_width, out_features).

  Raises:
    NotImplementedError: a convolution this function does not cover.
  """
  kh, kw, cin, cout = rhs.shape
  expected = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                            ('NHWC', 'HWIO', 'NHWC'))
  if (lhs.ndim != 4 or feature_group_count != 1
      or any(d != 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
      or dimension_numbers not in (None, expected)):
    raise NotImplementedError(
        'conv_im2col covers 2-D NHWC/HWIO convolutions without dilation or '
        f'groups; got lhs {lhs.shape}, rhs {rhs.shape}, dimension_numbers='
        f'{dimension_numbers}, feature_group_count={feature_group_count}, '
        f'dilations {lhs_dilation}, {rhs_dilation}. Use conv="xla".')
  sh, sw = window_strides
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], (kh, kw),
                                      window_strides, padding)
  (top, bottom), (left, right) = padding
  x = jnp.pad(lhs, ((0, 0), (top, bottom), (left, right), (0, 0)))
  out_h = (x.shape[1] - kh) // sh + 1
  out_w = (x.shape[2] - kw) // sw + 1
  columns = jnp.concatenate([
      x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
      for i in range(kh) for j in range(kw)], axis=-1)
  return jnp.einsum('nhwk,ko->nhwo', columns, rhs.reshape(kh * kw * cin, cout),
                    precision=precision)


def _im2col_interceptor(next_fun, args, kwargs, context):
  """Makes every plain `nn.Conv` of a model compute with `conv_im2col`."""
  module = context.module
  if (context.method_name == '__call__' and isinstance(module, nn.Conv)
      and module.conv_general_dilated is None
      and module.conv_general_dilated_cls is None):
    # Flax modules are frozen dataclasses; this instance was created by its
    # parent for this one call, so setting the field touches nothing else.
    object.__setattr__(module, 'conv_general_dilated', conv_im2col)
  return next_fun(*args, **kwargs)


def _with_im2col(fn):
  @functools.wraps(fn)
  def wrapped(*args):
    with nn.intercept_methods(_im2col_interceptor):
      return fn(*args)
  return wrapped


def model_fns(name: str, num_classes: int, conv: str = 'im2col') -> _ModelFns:
  """`name` of train/models.py (BatchNorm in train mode) or 'mlp'.

  'mlp' is benchmarks/workloads.py's MLP (256-256 hidden units, no
  BatchNorm); on digits its input has 64 features.

  Args:
    name: a key of `train.models.MODELS`, or 'mlp'.
    num_classes: number of logits (the MLP has 10).
    conv: 'im2col' (`conv_im2col`, see the module docstring) or 'xla'
      (`lax.conv_general_dilated`).

  Returns:
    The model's init, training-mode and evaluation-mode functions.
  """
  if conv not in ('im2col', 'xla'):
    raise ValueError(f"conv must be 'im2col' or 'xla', got {conv!r}.")
  if name == 'mlp':
    if num_classes != 10:
      raise ValueError(f"model 'mlp' has 10 outputs, not {num_classes}.")
    mlp = workloads.MLP()
    return _ModelFns(
        init=lambda key, x: (mlp.init(key, x)['params'], {}),
        apply_train=lambda p, s, x: (mlp.apply({'params': p}, x), s),
        apply_eval=lambda p, s, x: mlp.apply({'params': p}, x))
  # Each seed normalises with its own batch: no cross-device axis.
  model = models.create_model(name, num_classes=num_classes, bn_axis_name=None)

  def init(key, x):
    variables = model.init(key, x, train=False)
    return variables['params'], variables.get('batch_stats', {})

  def apply_train(params, batch_stats, x):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': batch_stats}, x, train=True,
        mutable=['batch_stats'])
    return logits, updates['batch_stats']

  def apply_eval(params, batch_stats, x):
    return model.apply({'params': params, 'batch_stats': batch_stats}, x,
                       train=False)

  fns = _ModelFns(init, apply_train, apply_eval)
  if conv == 'im2col':
    fns = _ModelFns(*map(_with_im2col, fns))
  return fns


class SeedTrainer:
  """Trains any number of seeds of one configuration, vmapped, on the device.

  Attributes:
    dataset: the dataset (digits unless given).
    batch_size: examples per step and seed.
    num_epochs: epochs of a run (the schedule's length).
    steps_per_epoch: full batches per epoch.
    init: jitted `init(seeds int array (S,)) -> SeedState` with axis S.
    train_epoch: jitted `train_epoch(state, epoch) -> (state, metrics)`;
      `metrics` holds per-seed 'train_loss', 'train_accuracy' (epoch means)
      and 'learning_rate' (S, steps_per_epoch). The input state is donated.
    evaluate: jitted `evaluate(state) -> {'test_loss', 'test_accuracy'}`,
      per seed, on the whole test split with BatchNorm's running averages.
  """

  def __init__(self, schedule_config: Mapping[str, Any], *, num_epochs: int,
               batch_size: int, model: str = 'resnet8',
               dataset: input_pipeline.Dataset | None = None,
               conv: str = 'im2col'):
    """Builds (but does not compile) the vmapped functions.

    Args:
      schedule_config: `name` and the arguments of a plrs_jax schedule, with
        `*_epochs` fields as in train/configs (see `train.create_schedule`).
      num_epochs: epochs of the run; the schedule's `total_steps` if it has
        one.
      batch_size: examples per step, for every seed.
      model: a model of train/models.py, or 'mlp'.
      dataset: an in-memory dataset; digits by default.
      conv: how convolutions are computed: 'im2col' or 'xla' (see the
        module docstring).
    """
    self.dataset = dataset or input_pipeline.load_dataset('digits')
    self.schedule_config = dict(schedule_config)
    self.batch_size = batch_size
    self.num_epochs = num_epochs
    self.steps_per_epoch = input_pipeline.steps_per_epoch(self.dataset,
                                                          batch_size)
    self.num_steps = num_epochs * self.steps_per_epoch
    self.model = model_fns(model, self.dataset.num_classes, conv)
    self.tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)
    self._train = _device_split(self.dataset.train)
    self._test = _device_split(self.dataset.test)
    # Fail on a bad schedule config now, not inside the first trace.
    self._schedule(jax.random.key(0))
    self.init = jax.jit(jax.vmap(self._init_one))
    self.train_epoch = jax.jit(
        jax.vmap(self._train_epoch_one, in_axes=(0, None)), donate_argnums=0)
    self.evaluate = jax.jit(jax.vmap(self._evaluate_one))

  def _schedule(self, schedule_key: jax.Array) -> optax.Schedule:
    return train.create_schedule(
        self.schedule_config, key=schedule_key,
        steps_per_epoch=self.steps_per_epoch, num_steps=self.num_steps)

  def _normalize(self, images):
    return train.normalize(images, self.dataset.mean, self.dataset.std)

  def _init_one(self, seed: jax.Array) -> SeedState:
    run_key = jax.random.key(seed)
    # The split of train.train_and_evaluate: same schedule and init keys.
    schedule_key, init_key, _, _ = jax.random.split(run_key, 4)
    params, batch_stats = self.model.init(
        init_key, jnp.zeros((1, *self.dataset.image_shape), jnp.float32))
    return SeedState(params=params, batch_stats=batch_stats,
                     opt_state=self.tx.init(params),
                     schedule_key=schedule_key,
                     data_key=jax.random.fold_in(run_key, _DATA_STREAM))

  def _step(self, schedule: optax.Schedule, count: jax.Array, carry,
            index: jax.Array):
    """One SGD step of one seed on the training rows `index` at step `count`."""
    params, batch_stats, opt_state = carry
    images, labels = self._train
    x = self._normalize(images[index])
    y = labels[index]

    def loss_fn(params):
      logits, new_stats = self.model.apply_train(params, batch_stats, x)
      loss = train.cross_entropy(logits, y).mean()
      return loss, (logits, new_stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(params)
    rate = schedule(count)
    hyperparams = opt_state.hyperparams
    opt_state = opt_state._replace(hyperparams={
        **hyperparams,
        'learning_rate': jnp.asarray(rate, hyperparams['learning_rate'].dtype)})
    updates, opt_state = self.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {'loss': loss,
               'accuracy': jnp.mean(jnp.argmax(logits, -1) == y),
               'learning_rate': rate}
    return (params, batch_stats, opt_state), metrics

  def _train_epoch_one(self, state: SeedState, epoch: jax.Array):
    schedule = self._schedule(state.schedule_key)
    steps, batch = self.steps_per_epoch, self.batch_size
    order = jax.random.permutation(jax.random.fold_in(state.data_key, epoch),
                                   self._train[1].shape[0])
    rows = order[:steps * batch].reshape(steps, batch)

    def step(carry, inputs):
      i, index = inputs
      return self._step(schedule, epoch * steps + i, carry, index)

    (params, batch_stats, opt_state), per_step = jax.lax.scan(
        step, (state.params, state.batch_stats, state.opt_state),
        (jnp.arange(steps), rows))
    state = state._replace(params=params, batch_stats=batch_stats,
                           opt_state=opt_state)
    return state, {'train_loss': per_step['loss'].mean(),
                   'train_accuracy': per_step['accuracy'].mean(),
                   'learning_rate': per_step['learning_rate']}

  def step_flops(self) -> float:
    """FLOPs of one training step of one seed, from XLA's cost analysis.

    Compiles the step alone (no loop, no vmap): XLA counts a while loop's
    body once, so the cost of a compiled epoch does not tell.
    """
    state = jax.eval_shape(self._init_one, jnp.int32(0))

    def one_step(state, index):
      carry = (state.params, state.batch_stats, state.opt_state)
      return self._step(self._schedule(state.schedule_key), jnp.int32(0),
                        carry, index)

    cost = jax.jit(one_step).lower(
        state, jax.ShapeDtypeStruct((self.batch_size,), jnp.int32)
    ).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    return float(cost.get('flops', float('nan')))

  def _evaluate_one(self, state: SeedState) -> dict[str, jax.Array]:
    images, labels = self._test
    logits = self.model.apply_eval(state.params, state.batch_stats,
                                   self._normalize(images))
    return {'test_loss': train.cross_entropy(logits, labels).mean(),
            'test_accuracy': jnp.mean(jnp.argmax(logits, -1) == labels)}

  def run(self, seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """Trains `seeds` together and evaluates after every epoch.

    Args:
      seeds: the seeds (as `config.seed` of `python -m train`).

    Returns:
      Per-seed, per-epoch numpy arrays: 'train_loss', 'train_accuracy',
      'test_loss', 'test_accuracy' of shape (S, num_epochs), and
      'learning_rate' of shape (S, num_epochs * steps_per_epoch).
    """
    state = self.init(jnp.asarray(seeds, jnp.int32))
    epochs = []
    for epoch in range(self.num_epochs):
      state, metrics = self.train_epoch(state, jnp.int32(epoch))
      metrics.update(self.evaluate(state))
      epochs.append(metrics)
    # One transfer at the end: nothing above waits for the host.
    epochs = jax.device_get(epochs)
    out = {key: np.stack([m[key] for m in epochs], axis=1)
           for key in epochs[0] if key != 'learning_rate'}
    out['learning_rate'] = np.concatenate(
        [m['learning_rate'] for m in epochs], axis=1)
    return out


def _device_split(split) -> tuple[jax.Array, jax.Array]:
  """All (image, label) records of a split as two device arrays."""
  records = [split[i] for i in range(len(split))]
  images = np.stack([np.asarray(r['image'], np.uint8) for r in records])
  labels = np.asarray([r['label'] for r in records], np.int32)
  return jax.device_put(images), jax.device_put(labels)


@functools.lru_cache(maxsize=1)
def _digits() -> input_pipeline.Dataset:
  return input_pipeline.load_dataset('digits')


def train_seeds(schedule_config: Mapping[str, Any], *, num_seeds: int,
                num_epochs: int, batch_size: int, model: str = 'resnet8',
                seed: int = 0, sequential: bool = False,
                conv: str = 'im2col') -> dict[str, np.ndarray]:
  """Trains seeds `seed .. seed + num_seeds - 1` on digits.

  Args:
    schedule_config: `name` and arguments of the schedule (as in
      train/configs; `*_epochs` fields are converted to steps).
    num_seeds: number of seeds S.
    num_epochs: epochs per run.
    batch_size: examples per step and seed.
    model: a model of train/models.py, or 'mlp'.
    seed: the first seed.
    sequential: run the seeds one after another through the same code with
      S = 1 instead of all together; the results agree to float tolerance.
    conv: 'im2col' or 'xla' (see the module docstring).

  Returns:
    Arrays with a leading seed axis, as `SeedTrainer.run` returns them.

  Example:
    >>> out = train_seeds({'name': 'constant', 'value': 0.1}, num_seeds=2,
    ...                   num_epochs=1, batch_size=256, model='mlp')
    >>> out['test_accuracy'].shape, out['learning_rate'].shape
    ((2, 1), (2, 5))
  """
  trainer = SeedTrainer(schedule_config, num_epochs=num_epochs,
                        batch_size=batch_size, model=model, dataset=_digits(),
                        conv=conv)
  seeds = list(range(seed, seed + num_seeds))
  if not sequential:
    return trainer.run(seeds)
  runs = [trainer.run([s]) for s in seeds]
  return {key: np.concatenate([r[key] for r in runs]) for key in runs[0]}
