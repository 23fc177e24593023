"""The models and steps the benchmarks time, on random data.

Each workload is a loss `loss_fn(params, batch) -> (loss, aux)` with its
initial parameters and one batch, so that any optimizer and schedule can be
timed on it with `sgd_step`.
"""

from collections.abc import Callable
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from train import models


class Workload(NamedTuple):
  """Initial params (and model state), a batch, and the loss on them."""
  name: str
  params: Any
  model_state: Any
  batch: dict[str, jax.Array]
  # loss_fn(params, model_state, batch) -> (loss, new_model_state)
  loss_fn: Callable[..., tuple[jax.Array, Any]]


class MLP(nn.Module):
  """784-256-256-10 with ReLU."""

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for width in (256, 256):
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(10)(x)


def _batch(key, batch_size, image_shape, num_classes=10):
  image_key, label_key = jax.random.split(key)
  return {
      'image': jax.random.normal(image_key, (batch_size, *image_shape)),
      'label': jax.random.randint(label_key, (batch_size,), 0, num_classes),
  }


def mlp(batch_size: int = 128, seed: int = 0) -> Workload:
  """The small MLP on 28x28 inputs (784 features)."""
  init_key, data_key = jax.random.split(jax.random.key(seed))
  model = MLP()
  batch = _batch(data_key, batch_size, (28, 28, 1))
  params = model.init(init_key, batch['image'])['params']

  def loss_fn(params, model_state, batch):
    logits = model.apply({'params': params}, batch['image'])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()
    return loss, model_state

  return Workload('mlp', params, {}, batch, loss_fn)


def cifar_model(name: str = 'resnet20', batch_size: int = 128, seed: int = 0,
                image_shape=(32, 32, 3), num_classes: int = 10,
                axis_name: str | None = None) -> Workload:
  """A model of train/models.py (BatchNorm in training mode) on random data."""
  init_key, data_key = jax.random.split(jax.random.key(seed))
  model = models.create_model(name, num_classes=num_classes,
                              bn_axis_name=axis_name)
  batch = _batch(data_key, batch_size, image_shape, num_classes)
  variables = jax.jit(functools.partial(model.init, train=False))(
      init_key, batch['image'][:1])
  return Workload(name, variables['params'], variables['batch_stats'], batch,
                  cifar_loss_fn(model))


def cifar_loss_fn(model: nn.Module) -> Callable[..., tuple[jax.Array, Any]]:
  """The training loss of a train/models.py model, as `Workload.loss_fn`.

  Args:
    model: a model with BatchNorm (its `batch_stats` are the model state).

  Returns:
    `loss_fn(params, batch_stats, batch) -> (loss, new_batch_stats)`, with
    BatchNorm in training mode. Useful to run a workload's parameters through
    the same network built differently (say, without a BatchNorm axis name)
    without initialising it again.
  """

  def loss_fn(params, model_state, batch):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': model_state}, batch['image'],
        train=True, mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']).mean()
    return loss, updates['batch_stats']

  return loss_fn


def sgd_step(workload: Workload, tx: optax.GradientTransformation,
             axis_name: str | None = None):
  """A step `(params, model_state, opt_state, batch) -> same + loss`.

  Unjitted: jit it, or pmap it with `axis_name` (gradients are pmean'd).
  """

  def step(params, model_state, opt_state, batch):
    (loss, model_state), grads = jax.value_and_grad(
        workload.loss_fn, has_aux=True)(params, model_state, batch)
    if axis_name is not None:
      grads = jax.lax.pmean(grads, axis_name)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), model_state, opt_state, loss

  return step
