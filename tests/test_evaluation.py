"""Schedule-free as its authors' SGDScheduleFree steps (restated in numpy),
what evaluation sees: its averaged parameters and BatchNorm statistics
recomputed over training batches (numpy's means and variances), and a run
logged at other rates refused on resume."""

import json
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from train import engine
from train import models
from train import optimizers
from train import train
from train import workdir as workdir_lib
from train.configs import fashion_mnist


def official_schedule_free_sgd(grad, w, rate, warmup_steps, num_steps,
                               b1=0.9, weight_decay=0.0, power=2.0):
  """`schedulefree.SGDScheduleFree.step` (PyPI schedulefree 1.4.1, r = 0)
  restated in numpy: ([y before each step], [each step's rate], final x)."""
  z, x, y = w, w, w
  rate_max = weight_sum = 0.0
  ys, rates = [], []
  for k in range(num_steps):
    ys.append(y)
    scheduled = rate * min(1.0, (k + 1) / warmup_steps)
    rate_max = max(rate_max, scheduled)
    weight = rate_max ** power
    weight_sum += weight
    c = weight / weight_sum if weight_sum else 0.0
    g = grad(y) + weight_decay * y
    z = z - scheduled * g
    x = (1 - c) * x + c * z
    y = (1 - b1) * z + b1 * x
    rates.append(scheduled)
  return ys, rates, x


def test_schedule_free_steps_as_its_authors_code_and_is_evaluated_at_x():
  # 20 steps, a warmup of 25% (5 steps) then constant; weight decay at y.
  config = fashion_mnist.get_config('schedule_free_sgd')
  config.schedule.update(peak_value=0.5, warmup_fraction=0.25)
  config.weight_decay = 0.01
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                        steps_per_epoch=20, num_steps=20)
  tx = optimizers.create_optimizer(config, schedule, 20)
  a = np.array([1.0, 3.0, 0.5])  # f(w) = sum(a w^2) / 2, gradient a w.
  w = np.array([1.0, -2.0, 4.0])
  ys, rates, x = official_schedule_free_sgd(lambda y: a * y, w, 0.5, 5, 20,
                                            weight_decay=0.01)
  state = engine.TrainState.create(apply_fn=None, params=jnp.asarray(w),
                                   tx=tx, batch_stats={})
  for y, rate in zip(ys, rates):
    # 20 steps of a few float32 operations each: rtol 1e-5 is generous.
    np.testing.assert_allclose(state.params, y, rtol=1e-5)
    updates, opt_state = state.tx.update(jnp.asarray(a) * state.params,
                                         state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
    np.testing.assert_allclose(engine.optimizer_metrics(opt_state)['lr'], rate,
                               rtol=1e-6)
  np.testing.assert_allclose(engine.evaluation_params(state), x, rtol=1e-5)
  assert not np.allclose(state.params, x, rtol=1e-3)
  # The first step moves z by a fifth of the rate (optax's schedule_free_sgd
  # does not move it).
  first = tx.update(jnp.ones(3), tx.init(jnp.zeros(3)), jnp.zeros(3))[1]
  np.testing.assert_allclose(optax.tree.get(first, 'z'), -0.1, rtol=1e-6)
  rate = optimizers.planned_rate(config, schedule, 20)
  np.testing.assert_allclose([rate(k) for k in range(20)], rates, rtol=1e-6)


def test_a_run_logged_at_other_rates_is_not_resumed(tmp_path):
  """A schedule-free run logged by optax's stepping (the warmup one step
  late) is refused; the rates of today's stepping resume."""
  config = fashion_mnist.get_config('schedule_free_sgd')
  config.schedule.update(peak_value=1.0, warmup_fraction=0.1)
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                        steps_per_epoch=100, num_steps=100)
  metrics = tmp_path / 'metrics.jsonl'
  # Logged step s (from 1) reports the rate of update s - 1.
  for rate, refused in ((lambda k: k / 10, True),
                        (lambda k: min(1.0, (k + 1) / 10), False)):
    metrics.write_text(''.join(json.dumps({'step': s, 'lr': rate(s - 1)})
                               + '\n' for s in range(5, 25, 5)))
    check = lambda: train._check_logged_rates(config, tmp_path, 20, schedule,
                                              100)
    if refused:
      with pytest.raises(workdir_lib.WorkdirError, match=re.escape(
          'took step 5 at rate 0.4, where this code steps its config at 0.5;'
          ' resuming would mix two runs.')):
        check()
    else:
      check()


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
  inputs = engine.StepConstants((100.0,), (50.0,))
  stats = engine.recomputed_batch_stats(state, jnp.asarray(images), inputs)
  x = (images.reshape(4, 16, -1).astype(np.float64) - 100.0) / 50.0
  np.testing.assert_allclose(stats['BatchNorm_0']['mean'],
                             x.mean(axis=1).mean(axis=0), rtol=1e-5)
  np.testing.assert_allclose(stats['BatchNorm_0']['var'],
                             x.var(axis=1).mean(axis=0), rtol=1e-5)
