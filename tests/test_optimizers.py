"""The optimizers a config can name: sgd, two_regime, autodrop, optax's.

Each is checked against its definition restated by hand: PyTorch's SGD
update, the recipe's switch, AutoDrop's scale.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from train import config_validation
from train import engine
from train import models
from train import optimizers
from train import train
from train.configs import default

STEPS_PER_EPOCH = 10


def updates_of(tx, steps=4):
  """The updates `tx` makes on a fixed gradient sequence, as numpy."""
  params = jnp.array([1.0, -2.0])
  state = tx.init(params)
  out = []
  for t in range(steps):
    grads = jnp.array([0.5, -0.25]) * (t + 1)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append(np.asarray(updates))
  return np.array(out), state


def pytorch_sgd(rate, momentum, weight_decay, steps=4):
  """torch.optim.SGD's updates (no Nesterov), restated in numpy."""
  params, buffer, out = np.array([1.0, -2.0]), None, []
  for t in range(steps):
    grads = np.array([0.5, -0.25]) * (t + 1) + weight_decay * params
    buffer = grads if buffer is None else momentum * buffer + grads
    update = -rate * (buffer if momentum else grads)
    params = params + update
    out.append(update)
  return np.array(out)


def test_default_config_builds_todays_sgd():
  config = default.get_config('constant')
  config.momentum, config.weight_decay = 0.9, 5e-4
  assert config.optimizer == 'sgd'
  tx = optimizers.create_optimizer(config, optax.constant_schedule(0.1),
                              STEPS_PER_EPOCH)
  updates, _ = updates_of(tx)
  # Four steps of a few float32 operations: rtol 1e-5 is generous.
  np.testing.assert_allclose(updates, pytorch_sgd(0.1, 0.9, 5e-4), rtol=1e-5)


def test_two_regime_switches_at_the_configured_epoch():
  config = default.get_config('constant')
  config.optimizer = 'two_regime'
  config.two_regime.small_learning_rate = 0.001
  config.two_regime.switch_step_epochs = 0.2   # 2 steps of 10
  schedule = optax.constant_schedule(0.1)
  tx = optimizers.create_optimizer(config, schedule, STEPS_PER_EPOCH)
  updates, state = updates_of(tx)
  np.testing.assert_allclose(updates[:2], pytorch_sgd(0.1, 0.0, 0.0)[:2],
                             rtol=1e-5)
  # Adam's first step from a fresh state is lr * sign(g) (up to eps / |g|).
  np.testing.assert_allclose(updates[2], -0.001 * np.sign([0.5, -0.25]),
                             rtol=1e-5)
  assert int(state.regime) == 1
  rate = optimizers.optimizer_rate(config, schedule, STEPS_PER_EPOCH)
  np.testing.assert_allclose([float(rate(t)) for t in range(4)],
                             [0.1, 0.1, 0.001, 0.001], rtol=1e-6)


def test_autodrop_is_sgd_then_scale_by_autodrop():
  config = default.get_config('constant')
  config.optimizer = 'autodrop'
  config.momentum = 0.9
  config.autodrop.min_scale = 0.002
  tx = optimizers.create_optimizer(config, optax.constant_schedule(0.1),
                              STEPS_PER_EPOCH)
  updates, state = updates_of(tx)
  np.testing.assert_allclose(updates, pytorch_sgd(0.1, 0.9, 0.0), rtol=1e-5)
  metrics = optimizers.optimizer_metrics(state)
  assert float(metrics['optimizer_scale']) == 1.0
  assert float(metrics['threshold']) == pytest.approx(0.01)
  assert np.isnan(float(metrics['angular_velocity']))
  assert optimizers.optimizer_metrics(optax.sgd(0.1).init(jnp.zeros(2))) == {}


def test_an_optax_optimizer_by_name_is_that_optimizer_at_the_schedule():
  config = default.get_config('constant')
  config.optimizer, config.optimizer_kwargs = 'adamw', {'b1': 0.8,
                                                       'weight_decay': 0.01}
  schedule = optax.linear_schedule(0.1, 0.01, 10)
  tx = optimizers.create_optimizer(config, schedule, STEPS_PER_EPOCH)
  reference = optax.adamw(schedule, b1=0.8, weight_decay=0.01)
  params = {'w': jnp.array([1.0, -2.0])}
  state, expected_state = tx.init(params), reference.init(params)
  for step in range(4):
    grads = {'w': jnp.array([0.5, 0.25]) * (step + 1)}
    updates, state = tx.update(grads, state, params)
    expected, expected_state = reference.update(grads, expected_state, params)
    np.testing.assert_array_equal(updates['w'], expected['w'])


def test_a_transform_by_name_follows_sgd_and_reads_the_loss():
  """reduce_on_plateau reads `value=`, as the train step passes it."""
  config = default.get_config('constant')
  config.optimizer = 'contrib.reduce_on_plateau'
  config.optimizer_kwargs = {'patience': 1, 'factor': 0.5, 'cooldown': 0,
                             'accumulation_size': 1}
  tx = optax.with_extra_args_support(optimizers.create_optimizer(
      config, optax.constant_schedule(0.1), STEPS_PER_EPOCH))
  params = {'w': jnp.ones(2)}
  state = tx.init(params)
  scales = []
  for _ in range(4):  # A loss that never improves: the scale halves.
    updates, state = tx.update({'w': jnp.ones(2)}, state, params,
                               value=jnp.float32(1.0), loss=jnp.float32(1.0))
    scales.append(float(optimizers.optimizer_metrics(state)[
        'optimizer_scale']))
    np.testing.assert_allclose(updates['w'], -0.1 * scales[-1], rtol=1e-6)
  assert scales[0] == 1.0 and scales[-1] < 1.0


def test_the_step_logs_the_scaled_rate_a_transform_exposes():
  """engine.train_step reports a plateau's scale and the rate it applied."""
  config = default.get_config('constant')
  config.optimizer = 'contrib.reduce_on_plateau'
  config.optimizer_kwargs = {'patience': 0, 'factor': 0.5, 'cooldown': 0,
                             'accumulation_size': 1, 'rtol': 1e-4, 'atol': 0.0}
  schedule = optax.constant_schedule(0.1)
  model = models.create_model('mlp', 10, hidden=(4,))
  state = engine.create_train_state(
      engine.run_keys(0).init, model, (8, 8, 1),
      optimizers.create_optimizer(config, schedule, STEPS_PER_EPOCH))
  batch = {'image': jnp.zeros((2, 8, 8, 1), jnp.uint8),
           'label': jnp.array([0, 1]), 'index': jnp.arange(2)}
  step = jax.jit(functools.partial(
      engine.train_step, rate=schedule, augment_key=None,
      dropout_key=engine.run_keys(0).dropout, mean=(0.,), std=(1.,)))
  scales, rates = [], []
  for _ in range(4):
    scale_before = optimizers.optimizer_metrics(state.opt_state)[
        'optimizer_scale']
    state, metrics = step(state, batch)
    rates.append(float(metrics['lr']))
    scales.append(float(scale_before))
  # The same batch again and again: the loss stops improving and the scale
  # halves; each logged rate is the schedule's times the scale it used.
  np.testing.assert_allclose(rates, 0.1 * np.asarray(scales), rtol=1e-6)
  assert scales[0] == 1.0 and scales[-1] < 1.0


@pytest.mark.parametrize('fields, pattern', [
    (dict(optimizer='no_such_thing'),
     r"config.optimizer: unknown optimizer 'no_such_thing'"),
    (dict(optimizer='adam', momentum=0.9),
     r"config.optimizer: momentum and nesterov are the sgd optimizer's"),
    (dict(optimizer='adam', optimizer_kwargs={'beta_one': 0.9}),
     r"config.optimizer: .*beta_one"),
    (dict(optimizer='sgd', optimizer_kwargs={'b1': 0.9}),
     r'config.optimizer: optimizer_kwargs are for optax optimizers'),
])
def test_bad_optimizer_names_and_arguments_are_config_errors(fields, pattern):
  config = default.get_config('constant')
  for field, value in fields.items():
    config[field] = value
  with pytest.raises(config_validation.ConfigError, match=pattern):
    config_validation.built('optimizer', optimizers.create_optimizer, config,
                            optax.constant_schedule(0.1), STEPS_PER_EPOCH)


@pytest.mark.parametrize('fields, pattern', [
    (dict(optimizer='two_regime', momentum=0.9),
     r'config.optimizer: two_regime runs plain SGD'),
    (dict(optimizer='two_regime'),
     r"config.optimizer: .*missing .*'small_learning_rate'"),
    (dict(optimizer='autodrop', autodrop=dict(drop_factor=2.0)),
     r'config.optimizer: scale_by_autodrop: `drop_factor` must be in'),
])
def test_optimizer_argument_errors_are_config_errors(fields, pattern):
  config = default.get_config('constant')
  for field, value in fields.items():
    if isinstance(value, dict):
      for name, v in value.items():
        config[field][name] = v
    else:
      config[field] = value
  with pytest.raises(config_validation.ConfigError, match=pattern):
    config_validation.built('optimizer', optimizers.create_optimizer, config,
                            optax.constant_schedule(0.1), STEPS_PER_EPOCH)


def test_runs_recorded_before_the_optimizer_fields_still_resume(tmp_path):
  """A run.json without the optimizer fields recorded plain SGD."""
  config = default.get_config()
  recorded = config.to_dict()
  for field in ('optimizer', 'two_regime', 'autodrop'):
    del recorded[field]
  resume = lambda config: train._check_same_run(  # pylint: disable=g-long-lambda
      recorded, config, tmp_path, 10, None, STEPS_PER_EPOCH)
  resume(config)
  config.optimizer = 'autodrop'
  with pytest.raises(train.workdirs.WorkdirError,
                     match=r"optimizer: None -> 'autodrop'"):
    resume(config)
  config = default.get_config()
  config.autodrop.threshold = 1.0
  with pytest.raises(train.workdirs.WorkdirError,
                     match=r'autodrop.threshold: None -> 1.0'):
    resume(config)
