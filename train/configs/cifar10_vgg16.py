"""The paper's VGG-16 on CIFAR-10: constant 0.05 and multi-step /10 every 30
epochs are its text (the trainer has no VGG call)."""

from train.configs import base
from train.configs import paper

SCHEDULES = paper.schedules(
    plrs_bounds=(0.07, 0.1), constant=0.05, cyclic=paper.CIFAR_CYCLIC,
    multistep=dict(init_value=0.1, boundaries_epochs=list(range(30, 500, 30)),
                   factor=0.1))


def get_config(schedule: str = 'plrs'):
  config = paper.get_config()
  config.dataset = 'cifar10'
  config.model = 'vgg16'
  config.batch_size = 128
  config.num_epochs = 500
  config.schedule = base.schedule_named(SCHEDULES, schedule)
  return config
