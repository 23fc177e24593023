"""The optimizers a config can name: sgd (the default), two_regime, autodrop.

Each is checked against its definition restated by hand: PyTorch's SGD
update, the recipe's switch, AutoDrop's scale.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from train import config_validation
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
  tx = train.create_optimizer(config, optax.constant_schedule(0.1),
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
  tx = train.create_optimizer(config, schedule, STEPS_PER_EPOCH)
  updates, state = updates_of(tx)
  np.testing.assert_allclose(updates[:2], pytorch_sgd(0.1, 0.0, 0.0)[:2],
                             rtol=1e-5)
  # Adam's first step from a fresh state is lr * sign(g) (up to eps / |g|).
  np.testing.assert_allclose(updates[2], -0.001 * np.sign([0.5, -0.25]),
                             rtol=1e-5)
  assert int(state.regime) == 1
  rate = train.optimizer_rate(config, schedule, STEPS_PER_EPOCH)
  np.testing.assert_allclose([float(rate(t)) for t in range(4)],
                             [0.1, 0.1, 0.001, 0.001], rtol=1e-6)


def test_autodrop_is_sgd_then_scale_by_autodrop():
  config = default.get_config('constant')
  config.optimizer = 'autodrop'
  config.momentum = 0.9
  config.autodrop.min_scale = 0.002
  tx = train.create_optimizer(config, optax.constant_schedule(0.1),
                              STEPS_PER_EPOCH)
  updates, state = updates_of(tx)
  np.testing.assert_allclose(updates, pytorch_sgd(0.1, 0.9, 0.0), rtol=1e-5)
  metrics = train.optimizer_metrics(state)
  assert float(metrics['optimizer_scale']) == 1.0
  assert float(metrics['threshold']) == pytest.approx(0.01)
  assert np.isnan(float(metrics['angular_velocity']))
  assert train.optimizer_metrics(optax.sgd(0.1).init(jnp.zeros(2))) == {}


@pytest.mark.parametrize('overrides, pattern', [
    (dict(optimizer='adamw'), r"config.optimizer='adamw' must be one of"),
])
def test_unknown_optimizer_is_a_config_error(overrides, pattern):
  config = default.get_config()
  for field, value in overrides.items():
    config[field] = value
  with pytest.raises(config_validation.ConfigError, match=pattern):
    config_validation.validate(config)


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
    config_validation.built('optimizer', train.create_optimizer, config,
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
