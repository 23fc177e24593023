"""Every config file loads, with every schedule it offers, into a schedule."""

import importlib
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from train import config_validation
from train import optimizers

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / 'train' / 'configs'
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob('*.py')
                 if p.stem not in ('__init__', 'base', 'paper')
                 and not p.stem.startswith('meta_train'))
# Configs of `python -m train.meta_train`: no schedule, their own fields.
META_TRAIN_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob('meta_train*.py'))
STEPS_PER_EPOCH = 391


def _cases():
  for name in CONFIGS:
    module = importlib.import_module(f'train.configs.{name}')
    for schedule in module.SCHEDULES:
      yield name, schedule


@pytest.mark.parametrize('config_name,schedule_name', list(_cases()))
def test_config_builds_its_schedule(config_name, schedule_name):
  module = importlib.import_module(f'train.configs.{config_name}')
  config = module.get_config(schedule_name)
  num_steps = config.num_epochs * STEPS_PER_EPOCH
  schedule = optimizers.create_schedule(
      config.schedule, key=np.uint32([0, 1]),
      steps_per_epoch=STEPS_PER_EPOCH, num_steps=num_steps)
  rates = np.array([float(schedule(t)) for t in
                    np.linspace(0, num_steps - 1, 50).astype(int)])
  assert np.isfinite(rates).all() and (rates >= 0).all()


def test_epoch_fields_become_steps():
  module = importlib.import_module('train.configs.cifar100_resnet110')
  config = module.get_config('multistep')
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                   steps_per_epoch=STEPS_PER_EPOCH,
                                   num_steps=500 * STEPS_PER_EPOCH)
  # /10 at epochs 100 and 150, counted in steps.
  for step, expected in [(100 * 391 - 1, 0.1), (100 * 391, 0.01),
                         (150 * 391 - 1, 0.01), (150 * 391, 0.001)]:
    np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6)


def test_knee_gets_the_run_length_and_plrs_per_epoch_holds_an_epoch():
  module = importlib.import_module('train.configs.cifar10_vgg16')
  total = 500 * STEPS_PER_EPOCH
  knee = optimizers.create_schedule(module.get_config('knee').schedule, key=0,
                               steps_per_epoch=STEPS_PER_EPOCH,
                               num_steps=total)
  # Explore at 0.1 for 100 epochs, then linear decay to 0 at the run's end;
  # KneeLRScheduler counts from 1, so step t has its get_lr(t + 1).
  explore = 100 * STEPS_PER_EPOCH
  np.testing.assert_allclose(float(knee(explore - 1)), 0.1, rtol=1e-6)
  middle = (explore + total) // 2
  np.testing.assert_allclose(
      float(knee(middle)), 0.1 * (total - middle - 1) / (total - explore),
      rtol=1e-5)
  assert float(knee(total - 1)) == 0.0
  per_epoch = optimizers.create_schedule(
      module.get_config('plrs_per_epoch').schedule, key=0,
      steps_per_epoch=STEPS_PER_EPOCH, num_steps=total)
  first = [float(per_epoch(t)) for t in range(0, STEPS_PER_EPOCH, 50)]
  assert len(set(first)) == 1
  assert float(per_epoch(STEPS_PER_EPOCH)) != first[0]


def test_unknown_schedule_for_a_config_lists_the_choices():
  module = importlib.import_module('train.configs.default')
  with pytest.raises(ValueError, match='choose one of plrs, constant'):
    module.get_config('cosine')


def _module(name):
  return importlib.import_module(f'train.configs.{name}')


PAPER_CONFIGS = [name for name in CONFIGS if name != 'default']
CIFAR_CONFIGS = [name for name in CONFIGS if name.startswith('cifar')]


@pytest.mark.parametrize('config_name', PAPER_CONFIGS)
def test_one_cycle_keeps_pytorchs_final_div_factor(config_name):
  # The authors' OneCycleLR call leaves final_div_factor at PyTorch's 1e4.
  module = _module(config_name)
  if 'one_cycle' not in module.SCHEDULES:
    pytest.skip('no one-cycle baseline in this setting')
  config = module.get_config('one_cycle')
  assert config.schedule.final_div_factor == 1e4
  num_steps = config.num_epochs * STEPS_PER_EPOCH
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                   steps_per_epoch=STEPS_PER_EPOCH,
                                   num_steps=num_steps)
  # The last step: max_lr / div_factor / final_div_factor = 0.1 / 10 / 1e4
  # (final_div_factor=10 would give 1e-3). float32 interpolation from 0.01
  # down to 1e-6 leaves an error of up to an ulp of 0.01.
  np.testing.assert_allclose(float(schedule(num_steps - 1)), 1e-6, rtol=0,
                             atol=np.spacing(np.float32(0.01)))


@pytest.mark.parametrize('config_name', CIFAR_CONFIGS)
def test_cifar_configs_offer_the_authors_cyclic_schedule(config_name):
  config = _module(config_name).get_config('cyclic_triangular')
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                   steps_per_epoch=STEPS_PER_EPOCH,
                                   num_steps=500 * STEPS_PER_EPOCH)

  def cyclic_lr(t, base_lr=0.01, max_lr=0.1, step_size=8000):
    # PyTorch's CyclicLR, mode='triangular', restated.
    cycle = np.floor(1 + t / (2 * step_size))
    x = np.abs(t / step_size - 2 * cycle + 1)
    return base_lr + (max_lr - base_lr) * max(0.0, 1 - x)

  for t in (0, 1, 4000, 7999, 8000, 8001, 12_345, 16_000, 100_003):
    np.testing.assert_allclose(float(schedule(t)), cyclic_lr(t), rtol=1e-5)


def test_tiny_imagenet_is_the_authors_trainer():
  config = _module('tiny_imagenet_resnet50').get_config()
  assert (config.momentum, config.weight_decay) == (0.9, 1e-4)
  assert (config.batch_size, config.num_epochs) == (50, 100)
  steps_per_epoch = 100_000 // 50
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                   steps_per_epoch=steps_per_epoch,
                                   num_steps=100 * steps_per_epoch)
  rates = np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(3 * 2000)))
  epochs = rates.reshape(3, 2000)
  assert (epochs == epochs[:, :1]).all() and len(set(epochs[:, 0])) == 3
  assert ((rates >= np.float32(0.35)) & (rates <= np.float32(0.4))).all()


def test_imagenet_is_the_authors_setting():
  config = _module('imagenet_resnet50').get_config()
  assert (config.momentum, config.weight_decay) == (0.8, 1e-4)
  assert config.model == 'resnet50_imagenet'
  assert (config.schedule.min_value, config.schedule.max_value) == (0.05, 0.11)
  assert config.schedule.hold_steps_epochs == 1
  steps_per_epoch = 1_281_167 // config.batch_size
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                   steps_per_epoch=steps_per_epoch,
                                   num_steps=80 * steps_per_epoch)
  assert float(schedule(0)) == float(schedule(steps_per_epoch - 1))
  assert float(schedule(0)) != float(schedule(steps_per_epoch))


@pytest.mark.parametrize('config_name', META_TRAIN_CONFIGS)
def test_meta_train_config_is_valid(config_name):
  module = importlib.import_module(f'train.configs.{config_name}')
  config_validation.validate_meta_train(module.get_config())


@pytest.mark.parametrize('config_name', CIFAR_CONFIGS)
def test_cifar_configs_offer_the_authors_cyclic_baseline_as_it_ran(
    config_name):
  """Their CyclicLR leaves cycle_momentum=True: on SGD(momentum=0) it sets
  momentum max_momentum - (max - base) * scale, scale the rate's triangle."""
  config = _module(config_name).get_config('cyclic_triangular_momentum')
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                        steps_per_epoch=STEPS_PER_EPOCH,
                                        num_steps=500 * STEPS_PER_EPOCH)
  tx = optimizers.create_optimizer(config, schedule, STEPS_PER_EPOCH)

  def torch_sgd(steps, grad=1.0):
    # torch.optim.SGD with CyclicLR(0.01, 0.1, step_size_up=8000), restated:
    # the buffer starts at the first gradient, then buf = m * buf + g.
    position, buf = 0.0, None
    for t in range(steps):
      scale = t / 8000  # t < 8000: the climb.
      lr, momentum = 0.01 + 0.09 * scale, 0.9 - 0.1 * scale
      buf = grad if buf is None else momentum * buf + grad
      position -= lr * buf
    return position

  params = jnp.zeros(())
  state = tx.init(params)
  for _ in range(5):
    updates, state = tx.update(jnp.ones(()), state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(float(params), torch_sgd(5), rtol=1e-6)
  # Plain SGD at the same rates moves less than half as far.
  assert abs(torch_sgd(5)) > 2.5 * sum(float(schedule(t)) for t in range(5))
  # `cyclic_triangular` is the same rate with plain SGD.
  plain = _module(config_name).get_config('cyclic_triangular')
  assert plain.momentum == 0 and 'cycle_momentum' not in plain.schedule


@pytest.mark.parametrize('fields, message', [
    (dict(momentum=0.9),
     'config.schedule.cycle_momentum=True cycles the momentum between '
     "base_momentum and max_momentum (as PyTorch's CyclicLR): set "
     'config.momentum=0, got config.momentum=0.9.'),
    (dict(optimizer='two_regime'),
     "config.schedule.cycle_momentum=True cycles the sgd optimizer's "
     "momentum; config.optimizer='two_regime' has none: set "
     "config.optimizer='sgd', or leave cycle_momentum unset."),
    (dict(optimizer='mlr_snet'), "config.optimizer='mlr_snet' has none"),
    (dict(optimizer='adam'), "config.optimizer='adam' has none"),
])
def test_cycle_momentum_with_another_momentum_is_refused(fields, message):
  config = _module('cifar100_resnet110').get_config(
      'cyclic_triangular_momentum')
  for field, value in fields.items():
    config[field] = value
  with pytest.raises(config_validation.ConfigError, match=re.escape(message)):
    config_validation.validate(config)


@pytest.mark.parametrize('optimizer', ['autodrop', 'contrib.reduce_on_plateau'])
def test_cycle_momentum_cycles_the_sgd_that_autodrop_or_a_transform_runs(
    optimizer):
  config = _module('cifar100_resnet110').get_config(
      'cyclic_triangular_momentum')
  config.optimizer = optimizer
  config_validation.validate(config)


def test_cycle_momentum_belongs_to_the_cyclic_schedule():
  config = _module('cifar100_resnet110').get_config()
  config.schedule.cycle_momentum = True
  with pytest.raises(config_validation.ConfigError, match=re.escape(
      'config.schedule.cycle_momentum=True belongs to a cyclic_triangular '
      "schedule (as in PyTorch's CyclicLR), not config.schedule.name='plrs': "
      'remove it.')):
    config_validation.validate(config)
