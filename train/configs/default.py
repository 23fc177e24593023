"""Default: PLRS on scikit-learn's digits with a small CIFAR-style ResNet,
offline in well under a minute on two CPU cores (`:NAME`: another schedule):

    python -m train --workdir=/tmp/plrs_digits
"""

import ml_collections

from train.configs import base

# The paper's schedules at the scale of this run (3 epochs of 44 steps); the
# PLRS bounds agree with `python -m train.range_test` (README).
_PAPER = base.paper_schedules(
    plrs_bounds=(0.07, 0.1), constant=0.1,
    multistep=dict(init_value=0.1, boundaries_epochs=[2], factor=0.1),
    knee_explore_epochs=1)
SCHEDULES = {
    **{name: s for name, s in _PAPER.items() if name != 'plrs_per_epoch'},
    'one_cycle': dict(_PAPER['one_cycle'], final_div_factor=10.0),
    **base.cyclic_schedules(dict(name='cyclic_triangular', init_value=0.01,
                                 peak_value=0.1, up_steps_epochs=0.5)),
}


def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
  return base.with_schedule(base.base_config(), SCHEDULES, schedule)
