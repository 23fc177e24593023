"""What evaluation sees: schedule-free's averaged parameters (its recurrences
restated in numpy) and BatchNorm statistics recomputed over training batches
(numpy's means and variances)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from train import engine
from train import models
from train import optimizers
from train.configs import fashion_mnist


def test_schedule_free_is_evaluated_at_its_average():
  config = fashion_mnist.get_config('schedule_free_sgd')
  config.schedule.update(peak_value=0.5, warmup_fraction=0.0)
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                        steps_per_epoch=10, num_steps=10)
  tx = optimizers.create_optimizer(config, schedule, 10)
  a = np.array([1.0, 3.0, 0.5])  # f(w) = sum(a w^2) / 2, gradient a w.
  state = engine.TrainState.create(
      apply_fn=None, params=jnp.array([1.0, -2.0, 4.0]), tx=tx,
      batch_stats={})
  b1, rate = 0.9, 0.5
  z = x = np.array([1.0, -2.0, 4.0])
  for t in range(5):
    y = (1 - b1) * z + b1 * x
    np.testing.assert_allclose(state.params, y, rtol=1e-5)
    grads = jax.tree.map(lambda w: jnp.asarray(a, jnp.float32) * w,
                         state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
    # Equal rates: x is the plain average of z_1..z_{t+1}.
    z = z - rate * a * y
    x = x + (z - x) / (t + 1)
  np.testing.assert_allclose(engine.evaluation_params(state), x, rtol=1e-5)
  assert not np.allclose(state.params, x, rtol=1e-3)


def test_evaluation_params_of_plain_sgd_are_its_params():
  state = engine.TrainState.create(apply_fn=None, params={'w': jnp.ones(2)},
                                   tx=optax.sgd(0.1), batch_stats={})
  assert engine.evaluation_params(state) is state.params


class _Normalized(nn.Module):
  """BatchNorm on the flattened input, then a linear layer."""

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = x.reshape(x.shape[0], -1)
    x = nn.BatchNorm(use_running_average=not train,
                     momentum=models.BN_MOMENTUM)(x)
    return nn.Dense(3)(x)


def test_recomputed_statistics_are_the_batches_mean_and_variance():
  model = _Normalized()
  images = np.random.default_rng(0).integers(
      0, 256, size=(4, 16, 2, 2, 1)).astype(np.uint8)  # 4 batches of 16.
  state = engine.create_train_state(jax.random.key(0), model, (2, 2, 1),
                                    optax.sgd(0.1))
  inputs = engine.Inputs((100.0,), (50.0,))
  stats = engine.recomputed_batch_stats(state, jnp.asarray(images), inputs)
  x = (images.reshape(4, 16, -1).astype(np.float64) - 100.0) / 50.0
  np.testing.assert_allclose(stats['BatchNorm_0']['mean'],
                             x.mean(axis=1).mean(axis=0), rtol=1e-5)
  np.testing.assert_allclose(stats['BatchNorm_0']['var'],
                             x.var(axis=1).mean(axis=0), rtol=1e-5)
