"""The paper's ResNet-110 on CIFAR-100."""

from train.configs import base
from train.configs import paper

SCHEDULES = paper.schedules(
    plrs_bounds=(0.07, 0.1), cyclic=paper.CIFAR_CYCLIC,
    multistep=dict(init_value=0.1, boundaries_epochs=[100, 150], factor=0.1))


def get_config(schedule: str = 'plrs'):
  config = paper.get_config()
  config.dataset = 'cifar100'
  config.model = 'resnet110'
  config.batch_size = 128
  config.num_epochs = 500
  config.schedule = base.schedule_named(SCHEDULES, schedule)
  return config
