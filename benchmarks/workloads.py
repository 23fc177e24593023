"""The models the benchmarks train, on one batch of random uint8 images.

`train_state` initialises one as the app does and `train_fn` is
train/engine.py's `train_step` on it: the step every program runs.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from train import engine
from train import models


class Workload(NamedTuple):
  """A model, one batch of random images and the images' statistics."""
  name: str
  model: Any
  batch: dict[str, jax.Array]
  image_shape: tuple[int, int, int]
  seed: int
  # Per-channel mean and SD of the images (uniform over 0..255).
  stats: dict[str, tuple[float, ...]]


def workload(name: str, batch_size: int = 128, seed: int = 0,
             axis_name: str | None = None, **model_kwargs) -> Workload:
  """`name` of train/models.py on a batch of random images.

  The MLP reads 28x28 grey images (784 features), the others 32x32 colour
  ones; 10 classes.

  Example:
    >>> w = workload('mlp', batch_size=4)
    >>> w.batch['image'].shape, w.batch['image'].dtype
    ((4, 28, 28, 1), dtype('uint8'))
  """
  image_shape = (28, 28, 1) if name == 'mlp' else (32, 32, 3)
  model = models.create_model(name, num_classes=10, bn_axis_name=axis_name,
                              **model_kwargs)
  image_key, label_key = jax.random.split(jax.random.key(seed))
  batch = {
      'image': jax.random.randint(image_key, (batch_size, *image_shape), 0,
                                  256).astype(jnp.uint8),
      'label': jax.random.randint(label_key, (batch_size,), 0, 10),
      'index': jnp.arange(batch_size),
  }
  channels = image_shape[-1]
  stats = {'mean': (127.5,) * channels, 'std': (73.9,) * channels}
  return Workload(name, model, batch, image_shape, seed, stats)


def train_state(w: Workload,
                tx: optax.GradientTransformation) -> engine.TrainState:
  """The workload's initial state, as `python -m train` initialises it."""
  return engine.create_train_state(engine.run_keys(w.seed).init, w.model,
                                   w.image_shape, tx)


def train_fn(w: Workload, axis_name: str | None = None):
  """`engine.train_step` on the workload, `(state, batch) -> (state, metrics)`,
  unjitted: jit it, or pmap it with `axis_name`."""
  return functools.partial(
      engine.train_step, axis_name=axis_name, inputs=engine.StepConstants(
          w.stats['mean'], w.stats['std'], None,
          engine.run_keys(w.seed).dropout))
