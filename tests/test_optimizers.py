"""The optimizers a config can name: sgd, two_regime, autodrop, mlr_snet,
optax's.

Each is checked against its definition restated by hand: PyTorch's SGD
update, the recipe's switch, AutoDrop's scale, MLR-SNet's cell in numpy.
"""

import functools
import re

from flax import jax_utils
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from test_mlr_snet import numpy_gamma
from test_mlr_snet import numpy_run
from train import config_validation
from train import engine
from train import mlr_snet_file
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
  assert int(engine.optimizer_metrics(state)['regime']) == 1
  rate = optimizers.planned_rate(config, schedule, STEPS_PER_EPOCH)
  np.testing.assert_allclose([float(rate(t)) for t in range(4)],
                             [0.1, 0.1, 0.001, 0.001], rtol=1e-6)
  # The last update's reported rate: Adam's.
  np.testing.assert_allclose(engine.optimizer_metrics(state)['lr'], 0.001,
                             rtol=1e-6)


def test_autodrop_is_sgd_then_scale_by_autodrop():
  config = default.get_config('constant')
  config.optimizer = 'autodrop'
  config.momentum = 0.9
  config.autodrop.min_scale = 0.002
  tx = optimizers.create_optimizer(config, optax.constant_schedule(0.1),
                              STEPS_PER_EPOCH)
  updates, state = updates_of(tx)
  np.testing.assert_allclose(updates, pytorch_sgd(0.1, 0.9, 0.0), rtol=1e-5)
  metrics = engine.optimizer_metrics(state)
  assert float(metrics['optimizer_scale']) == 1.0
  assert float(metrics['threshold']) == pytest.approx(0.01)
  assert np.isnan(float(metrics['angular_velocity']))
  assert engine.optimizer_metrics(optax.sgd(0.1).init(jnp.zeros(2))) == {}


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


@pytest.mark.parametrize('optimizer, steps_ahead', [
    ('sgd', 0), ('adam', 0), ('contrib.schedule_free_sgd', 1),
    ('autodrop', None), ('contrib.reduce_on_plateau', None),
    ('mlr_snet', None)])
def test_the_planned_rate_is_the_schedules_where_the_step_decides_it(
    optimizer, steps_ahead):
  """Schedule-free SGD steps at the next step's rate; AutoDrop, a transform
  and MLR-SNet's nets decide theirs as the run goes: none is planned."""
  config = default.get_config('constant')
  config.optimizer = optimizer
  schedule = optax.linear_schedule(0.1, 0.01, 10)
  rate = optimizers.planned_rate(config, schedule, STEPS_PER_EPOCH)
  if steps_ahead is None:
    assert rate is None
    return
  # optax's linear schedule from 0.1 to 0.01 over 10 steps, in closed form.
  expected = [0.1 - 0.009 * min(t + steps_ahead, 10) for t in range(12)]
  np.testing.assert_allclose([float(rate(t)) for t in range(12)], expected,
                             rtol=1e-6)


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
    scales.append(float(engine.optimizer_metrics(state)['optimizer_scale']))
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
      engine.train_step, inputs=engine.StepConstants(
          (0.,), (1.,), None, engine.run_keys(0).dropout)))
  scales, rates = [], []
  for _ in range(4):
    scale_before = engine.optimizer_metrics(state.opt_state)['optimizer_scale']
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
    (dict(optimizer='adam', optimizer_kwargs={'beta_one': 0.9}),
     r"config.optimizer: .*beta_one"),
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
    config_validation.build_or_config_error(
        'optimizer', optimizers.create_optimizer, config,
        optax.constant_schedule(0.1), STEPS_PER_EPOCH)


@pytest.mark.parametrize('fields, message', [
    (dict(optimizer='no_such_thing'),
     "config.optimizer='no_such_thing' must be one of 'sgd', 'two_regime', "
     "'autodrop', 'mlr_snet' or the name of an optax function, such as "
     "'adam'."),
    (dict(optimizer='adam', momentum=0.9),
     "config.momentum and config.nesterov are the sgd optimizer's; "
     "config.optimizer='adam' takes its own arguments in "
     'config.optimizer_kwargs: set config.momentum=0 and '
     'config.nesterov=False, got config.momentum=0.9, config.nesterov=False.'),
    (dict(optimizer='contrib.schedule_free_sgd', nesterov=True),
     "config.optimizer='contrib.schedule_free_sgd' takes its own arguments"),
    (dict(optimizer='sgd', optimizer_kwargs={'b1': 0.9}),
     "config.optimizer_kwargs={'b1': 0.9} are for optax optimizers; "
     "config.optimizer='sgd' takes its settings from config.momentum and "
     'config.nesterov: leave optimizer_kwargs empty.'),
    (dict(optimizer='autodrop', optimizer_kwargs={'drop_factor': 0.5}),
     "config.optimizer='autodrop' takes its settings from config.autodrop: "
     'leave optimizer_kwargs empty.'),
    (dict(optimizer='two_regime', momentum=0.9),
     "config.optimizer='two_regime' runs plain SGD before the switch "
     '(momentum only rescales the rate in the large-step regime): set '
     'config.momentum=0 and config.nesterov=False, got config.momentum=0.9, '
     'config.nesterov=False.'),
])
def test_fields_that_contradict_each_other_are_refused_before_the_run(
    fields, message):
  config = default.get_config('constant')
  for field, value in fields.items():
    config[field] = value
  with pytest.raises(config_validation.ConfigError, match=re.escape(message)):
    config_validation.validate(config)


def test_fields_of_another_optimizer_at_their_defaults_pass():
  for optimizer in ('adam', 'contrib.reduce_on_plateau', 'two_regime',
                    'mlr_snet', 'autodrop', 'sgd'):
    config = default.get_config('constant')
    config.optimizer = optimizer
    config_validation.validate(config)
  # A transform that takes no rate follows SGD, which has a momentum.
  config.optimizer, config.momentum = 'contrib.reduce_on_plateau', 0.9
  config_validation.validate(config)


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
  with pytest.raises(train.workdir_lib.WorkdirError,
                     match=r"optimizer: None -> 'autodrop'"):
    resume(config)
  config = default.get_config()
  config.autodrop.threshold = 1.0
  with pytest.raises(train.workdir_lib.WorkdirError,
                     match=r'autodrop.threshold: None -> 1.0'):
    resume(config)


def mlr_snet_config(**fields):
  config = default.get_config()
  config.optimizer, config.weight_decay = 'mlr_snet', 5e-4
  for field, value in fields.items():
    setattr(config.mlr_snet if field == 'transfer' else config, field, value)
  return config


@pytest.mark.parametrize('transfer', ['frozen', 'snapshots'])
def test_mlr_snet_is_sgd_at_the_shipped_nets_rate(transfer):
  """Updates -alpha_t (g + wd theta), alpha_t from the numpy cell run on the
  losses with the shipped snapshots: the last throughout ('frozen'), or one
  per third of the run with gamma recomputed from the loss at each switch."""
  config = mlr_snet_config(num_epochs=3, transfer=transfer)
  steps_per_epoch, steps, initial_loss = 2, 6, 2.3
  tx = optax.with_extra_args_support(optimizers.create_optimizer(
      config, optax.constant_schedule(0.1), steps_per_epoch,
      initial_loss=initial_loss, num_classes=10))
  snapshots = mlr_snet_file.load(None).snapshots
  losses = [2.3, 1.9, 1.1, 0.7, 0.4, 0.2]
  if transfer == 'frozen':
    nets, gammas = [snapshots[-1]] * steps, [numpy_gamma(2.3, 10)] * steps
  else:  # switches after epochs 1 and 2, at updates 2 and 4
    nets = [snapshots[t // 2] for t in range(steps)]
    gammas = [numpy_gamma(2.3, 10)] * 2 + [abs(numpy_gamma(1.1, 10))] * 2 + [
        abs(numpy_gamma(0.4, 10))] * 2
  rates, _, _ = numpy_run(nets, losses, gammas)
  params = jnp.array([1.0, -2.0])
  state = tx.init(params)
  for t, loss in enumerate(losses):
    grads = jnp.array([0.5, -0.25]) * (t + 1)
    updates, state = tx.update(grads, state, params, loss=jnp.float32(loss))
    np.testing.assert_allclose(
        updates, -rates[t] * (np.asarray(grads) + 5e-4 * np.asarray(params)),
        rtol=1e-4)
    params = optax.apply_updates(params, updates)
    metrics = engine.optimizer_metrics(state)
    np.testing.assert_allclose(metrics['lr'], rates[t], rtol=1e-5)
    np.testing.assert_allclose(metrics['gamma'], gammas[t], rtol=1e-5)
  assert len(set(np.round(gammas, 6))) == (1 if transfer == 'frozen' else 3)


@pytest.mark.parametrize('fields, message', [
    (dict(momentum=0.9),
     "config.optimizer='mlr_snet' runs plain SGD at the learnt rate, as its "
     'nets are meta-trained: set config.momentum=0 and config.nesterov=False, '
     'got config.momentum=0.9, config.nesterov=False.'),
    (dict(nesterov=True),
     "config.optimizer='mlr_snet' runs plain SGD at the learnt rate"),
    (dict(transfer='snapshots', num_epochs=2),
     "config.mlr_snet.transfer='snapshots' runs each of the 3 snapshots for "
     'config.num_epochs // 3 epochs: set config.num_epochs >= 3, got 2, or '
     "transfer='frozen'."),
])
def test_mlr_snet_argument_errors_are_found_before_the_run(fields, message):
  with pytest.raises(config_validation.ConfigError, match=re.escape(message)):
    config_validation.validate(mlr_snet_config(**fields))


def test_snapshots_need_a_file_of_snapshots(tmp_path):
  np.savez(tmp_path / 'other.npz', weights=np.ones(3))
  config = mlr_snet_config(transfer='snapshots')
  config.mlr_snet.checkpoint = str(tmp_path / 'other.npz')
  with pytest.raises(config_validation.ConfigError,
                     match=r"config.mlr_snet.checkpoint='.*other.npz': .* is "
                     r"no file of MLR-SNet snapshots: it holds 'weights'"):
    config_validation.validate(config)
  config_validation.validate(mlr_snet_config(transfer='snapshots',
                                             num_epochs=3))


@pytest.mark.parametrize('field, value, pattern', [
    ('checkpoint', '/no/such/net.npz',
     r"config.mlr_snet.checkpoint='/no/such/net.npz' names no file"),
    ('transfer', 'thirds',
     r"config.mlr_snet.transfer='thirds' must be 'frozen' .* or 'snapshots'"),
])
def test_mlr_snet_fields_are_checked_before_the_run(field, value, pattern):
  config = mlr_snet_config()
  config.mlr_snet[field] = value
  with pytest.raises(config_validation.ConfigError, match=pattern):
    config_validation.validate(config)


def test_a_file_that_holds_no_snapshots_is_a_config_error(tmp_path):
  np.savez(tmp_path / 'other.npz', weights=np.ones(3))
  config = mlr_snet_config()
  config.mlr_snet.checkpoint = str(tmp_path / 'other.npz')
  config_validation.validate(config)  # The file exists: read when built.
  with pytest.raises(config_validation.ConfigError,
                     match=r"config.optimizer: .*other.npz is no file of "
                     r"MLR-SNet snapshots: it holds 'weights'"):
    config_validation.build_or_config_error(
        'optimizer', optimizers.create_optimizer, config,
        optax.constant_schedule(0.1), STEPS_PER_EPOCH, initial_loss=2.3,
        num_classes=10)


def test_mlr_snet_replicas_agree_under_pmap_without_axis_name():
  """The step passes the loss averaged over replicas, so every replica's
  net reads the global batch's loss and takes the rate one device takes on
  the whole batch (the replicas' own losses differ)."""
  model = models.create_model('mlp', 10, hidden=(8,))
  tx = optimizers.create_optimizer(mlr_snet_config(), None, STEPS_PER_EPOCH,
                                   initial_loss=2.3, num_classes=10)
  state = engine.create_train_state(engine.run_keys(0).init, model,
                                    (8, 8, 1), tx)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (8, 8, 8, 1), dtype=np.uint8),
           'label': np.arange(8) % 10, 'index': np.arange(8)}
  step = functools.partial(engine.train_step, inputs=engine.StepConstants(
      (127.,), (64.,), None, engine.run_keys(0).dropout))
  _, metrics = jax.pmap(functools.partial(step, axis_name='batch'),
                        axis_name='batch')(
      jax_utils.replicate(state, jax.local_devices()[:2]),
      jax.tree.map(lambda x: x.reshape(2, 4, *x.shape[1:]), batch))
  _, alone = jax.jit(step)(state, batch)
  per_replica = [float(optax.softmax_cross_entropy_with_integer_labels(
      model.apply({'params': state.params},
                  (batch['image'][rows] - 127.) / 64.),
      batch['label'][rows]).mean()) for rows in (slice(0, 4), slice(4, 8))]
  assert abs(per_replica[0] - per_replica[1]) > 1e-3
  np.testing.assert_array_equal(metrics['lr'][0], metrics['lr'][1])
  np.testing.assert_allclose(metrics['lr'][0], alone['lr'], rtol=1e-6)
