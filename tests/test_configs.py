"""Every config file loads, with every schedule it offers, into a schedule."""

import importlib
import pathlib

import numpy as np
import pytest

from train import train

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / 'train' / 'configs'
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob('*.py')
                 if p.stem not in ('__init__', 'base'))
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
  schedule = train.create_schedule(
      config.schedule, key=np.uint32([0, 1]),
      steps_per_epoch=STEPS_PER_EPOCH, num_steps=num_steps)
  rates = np.array([float(schedule(t)) for t in
                    np.linspace(0, num_steps - 1, 50).astype(int)])
  assert np.isfinite(rates).all() and (rates >= 0).all()


def test_epoch_fields_become_steps():
  module = importlib.import_module('train.configs.cifar100_resnet110')
  config = module.get_config('multistep')
  schedule = train.create_schedule(config.schedule, key=0,
                                   steps_per_epoch=STEPS_PER_EPOCH,
                                   num_steps=500 * STEPS_PER_EPOCH)
  # /10 at epochs 100 and 150, counted in steps.
  for step, expected in [(100 * 391 - 1, 0.1), (100 * 391, 0.01),
                         (150 * 391 - 1, 0.01), (150 * 391, 0.001)]:
    np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6)


def test_knee_gets_the_run_length_and_plrs_per_epoch_holds_an_epoch():
  module = importlib.import_module('train.configs.cifar10_vgg16')
  total = 500 * STEPS_PER_EPOCH
  knee = train.create_schedule(module.get_config('knee').schedule, key=0,
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
  per_epoch = train.create_schedule(
      module.get_config('plrs_per_epoch').schedule, key=0,
      steps_per_epoch=STEPS_PER_EPOCH, num_steps=total)
  first = [float(per_epoch(t)) for t in range(0, STEPS_PER_EPOCH, 50)]
  assert len(set(first)) == 1
  assert float(per_epoch(STEPS_PER_EPOCH)) != first[0]


def test_unknown_schedule_for_a_config_lists_the_choices():
  module = importlib.import_module('train.configs.default')
  with pytest.raises(ValueError, match='choose one of plrs, constant'):
    module.get_config('cosine')
