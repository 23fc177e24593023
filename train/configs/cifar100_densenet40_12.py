"""The paper's DenseNet-40-12 on CIFAR-100, batch 64."""

from train.configs import base
from train.configs import paper

SCHEDULES = paper.schedules(
    plrs_bounds=(0.1, 0.2), cyclic=paper.CIFAR_CYCLIC,
    multistep=dict(init_value=0.1, boundaries_epochs=[150, 225], factor=0.1))


def get_config(schedule: str = 'plrs'):
  config = paper.get_config()
  config.dataset = 'cifar100'
  config.model = 'densenet40_12'
  config.batch_size = 64
  config.num_epochs = 500
  config.schedule = base.schedule_named(SCHEDULES, schedule)
  return config
