"""Default: PLRS on scikit-learn's digits with a small CIFAR-style ResNet,
offline in well under a minute on two CPU cores (`:NAME`: another schedule)."""

from train.configs import base
from train.configs import paper

# The paper's schedules for 3 epochs of 44 steps; bounds as train.range_test's.
SCHEDULES = paper.schedules(
    plrs_bounds=(0.07, 0.1), knee_explore_epochs=1,
    multistep=dict(init_value=0.1, boundaries_epochs=[2], factor=0.1),
    cyclic=dict(init_value=0.01, peak_value=0.1, up_steps_epochs=0.5))
del SCHEDULES['plrs_per_epoch']
SCHEDULES['one_cycle']['final_div_factor'] = 10.0


def get_config(schedule: str = 'plrs'):
  config = base.base_config()
  config.schedule = base.schedule_named(SCHEDULES, schedule)
  return config
