"""The paper's WRN-28-10 on CIFAR-10: multi-step 0.2, x0.2 at epochs 60, 120,
160 is its text, not the trainer's [100, 150]."""

from train.configs import base
from train.configs import paper

SCHEDULES = paper.schedules(
    plrs_bounds=(0.07, 0.1), cyclic=paper.CIFAR_CYCLIC,
    multistep=dict(init_value=0.2, boundaries_epochs=[60, 120, 160],
                   factor=0.2))


def get_config(schedule: str = 'plrs'):
  config = paper.get_config()
  config.dataset = 'cifar10'
  config.model = 'wrn28_10'
  config.batch_size = 128
  config.num_epochs = 500
  config.schedule = base.schedule_named(SCHEDULES, schedule)
  return config
