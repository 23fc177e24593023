"""A duration is given one way (steps, epochs or a fraction of the run),
converted once the run's length is known; mistakes name the field written.

Rates are checked against the schedules' closed forms (Iyer et al.'s
KneeLRScheduler, PyTorch's MultiStepLR)."""

import re

import jax
import numpy as np
import pytest

from train import config_validation
from train import durations
from train import optimizers
from train.configs import default
from train.configs import fashion_mnist

ConfigError = config_validation.ConfigError


def knee(peak, explore, total, step):
  """KneeLRScheduler without warmup: step t (from 0) has get_lr(t + 1)."""
  g = step + 1
  return peak if g <= explore else max(
      0.0, peak - peak / (total - explore) * (g - explore))


def test_a_flag_in_steps_replaces_the_files_epochs():
  config = default.get_config('knee')  # explore_steps_epochs=1 by default.
  config.num_epochs = 2
  config.schedule.explore_steps = 10
  durations.prefer_overrides(config, ['schedule.explore_steps',
                                      'num_epochs'])
  assert 'explore_steps_epochs' not in config.schedule
  config_validation.validate(config)
  schedule = optimizers.create_schedule(config.schedule, key=0,
                                        steps_per_epoch=44, num_steps=88)
  np.testing.assert_allclose([float(schedule(t)) for t in range(88)],
                             [knee(0.1, 10, 88, t) for t in range(88)],
                             rtol=1e-5, atol=1e-7)


def test_a_flag_replaces_a_declared_sections_other_unit():
  # fashion_mnist's two_regime switches at half the run by default.
  config = fashion_mnist.get_config('two_regime')
  config.two_regime.switch_step = 7
  durations.prefer_overrides(config, ['two_regime.switch_step'])
  assert config.two_regime.switch_step_of_run is None
  rate = optimizers.planned_rate(config, lambda count: 0.1, 10)
  np.testing.assert_allclose([float(rate(t)) for t in (6, 7)], [0.1, 1e-3],
                             rtol=1e-6)


def test_a_flag_leaves_other_durations_and_flags_in_both_units_alone():
  config = default.get_config('knee')
  config.schedule.explore_steps = 10
  durations.prefer_overrides(config, ['schedule.explore_steps',
                                      'schedule.explore_steps_epochs'])
  with pytest.raises(ConfigError, match=re.escape(
      'config.schedule.explore_steps=10 and '
      'config.schedule.explore_steps_epochs=1 both give explore_steps: keep '
      'one')):
    config_validation.validate(config)
  config = default.get_config('multistep')
  durations.prefer_overrides(config, ['schedule.init_value'])
  assert config.schedule.boundaries_epochs == (2,)


@pytest.mark.parametrize('section, pattern', [
    (dict(name='plrs', min_value=0.07, max_value=0.1, hold_steps=5,
          hold_steps_epochs=1),
     'config.schedule.hold_steps=5 and config.schedule.hold_steps_epochs=1 '
     'both give hold_steps'),
    # 1 step of 21 is not 5% of the run.
    (dict(name='wsd', peak_value=0.1, warmup_fraction_of_run=0.05),
     'config.schedule.warmup_fraction_of_run=0.05: warmup_fraction counts no '
     'steps, so it takes no _of_run form; set config.schedule.warmup_fraction '
     'itself.'),
    (dict(name='cyclic_triangular', init_value=0.01, peak_value=0.1,
          up_steps_of_run=0.02),
     'config.schedule.up_steps_of_run=0.02 is 0.42 of a step in this run of '
     '21 steps: give at least 0.0476 (1 step), or a number of steps as '
     'config.schedule.up_steps.'),
    (dict(name='plrs', min_value=0.07, max_value=0.1, hold_steps_epochs=0.05),
     'config.schedule.hold_steps_epochs=0.05 is 0.35 of a step at 7 steps an '
     'epoch: give at least 0.143 (1 step)'),
    (dict(name='multistep', init_value=0.1, boundaries_epochs=(1, -2)),
     'config.schedule.boundaries_epochs=(1, -2) must be epochs >= 0.'),
    (dict(name='knee', peak_value=0.1, warmup_steps=0, explore_steps=-3),
     'config.schedule.explore_steps=-3 must be a number of steps >= 0.'),
    (dict(name='knee', peak_value=0.1, warmup_steps=0, explore_steps=4,
          total_steps=5),
     "config.schedule.total_steps=5 ends the schedule after 5 of the run's 21 "
     'steps, leaving the rest at its final rate'),
    (dict(name='knee', peak_value=0.1, warmup_steps=0, explore_steps=4,
          total_steps_epochs=2),
     "config.schedule.total_steps_epochs=2 ends the schedule after 14 of the "
     "run's 21 steps"),
])
def test_a_duration_mistake_names_the_field_written(section, pattern):
  # 3 epochs of 7 steps.
  with pytest.raises(ConfigError, match=re.escape(pattern)):
    optimizers.create_schedule(section, key=jax.random.key(0),
                               steps_per_epoch=7, num_steps=21)


def test_a_zero_duration_is_zero_steps():
  schedule = optimizers.create_schedule(
      dict(name='knee', peak_value=0.1, warmup_steps_epochs=0.0,
           explore_steps_of_run=0.5), key=0, steps_per_epoch=7, num_steps=20)
  np.testing.assert_allclose([float(schedule(t)) for t in range(20)],
                             [knee(0.1, 10, 20, t) for t in range(20)],
                             rtol=1e-5, atol=1e-7)


def test_two_regime_durations_name_their_section():
  config = default.get_config('constant')
  config.optimizer = 'two_regime'
  config.two_regime.small_learning_rate = 1e-3
  config.two_regime.switch_step_of_run = 0.01
  with pytest.raises(ConfigError, match=re.escape(
      'config.two_regime.switch_step_of_run=0.01 is 0.3 of a step in this '
      'run of 30 steps')):
    optimizers.create_optimizer(config, lambda count: 0.1, 10)


@pytest.mark.parametrize('optimizer, kwargs, pattern', [
    ('contrib.schedule_free_sgd', {'b1': 1.5},
     'config.optimizer_kwargs.b1=1.5 must be a number in (0, 1] for '
     'contrib.schedule_free_sgd.'),
    ('contrib.schedule_free_sgd', {'b1': 0.0}, 'b1=0.0 must be a number in'),
    ('contrib.schedule_free_sgd', {'weight_lr_power': -1.0},
     'weight_lr_power=-1.0 must be a finite number >= 0'),
    ('adam', {'b2': 1.0},
     'config.optimizer_kwargs.b2=1.0 must be a number in [0, 1) for adam.'),
    ('adamw', {'weight_decay': -0.1}, 'weight_decay=-0.1 must be'),
])
def test_optimizer_arguments_are_checked_in_their_range(optimizer, kwargs,
                                                        pattern):
  config = default.get_config('constant')
  config.optimizer, config.optimizer_kwargs = optimizer, kwargs
  with pytest.raises(ConfigError, match=re.escape(pattern)):
    config_validation.validate(config)


def test_optimizer_arguments_at_their_ranges_edges_pass():
  config = default.get_config('constant')
  config.optimizer = 'contrib.schedule_free_sgd'
  config.optimizer_kwargs = {'b1': 1.0, 'weight_lr_power': 0.0}
  config_validation.validate(config)
  config.optimizer, config.optimizer_kwargs = 'adam', {'b1': 0.0, 'b2': 0.999}
  config_validation.validate(config)
