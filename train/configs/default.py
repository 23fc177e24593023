"""Default: PLRS on scikit-learn's digits with a small CIFAR-style ResNet.

Runs offline in well under a minute on two CPU cores:

    python -m train --workdir=/tmp/plrs_digits

`--config=train/configs/default.py:NAME` trains the same model with another
schedule (constant, multistep, cosine_warm_restarts, knee, one_cycle,
cyclic_triangular, cyclic_triangular_momentum) at comparable rates.
"""

import ml_collections

from train.configs import base

# Schedules at the scale of the default run (3 epochs of 44 steps). The PLRS
# bounds agree with `python -m train.range_test` on this model and data,
# which suggests (0.061, 0.087) to (0.068, 0.098) by machine: one step of
# its rate grid apart (README, 'Choosing L_min and L_max').
SCHEDULES = {
    'plrs': dict(name='plrs', min_value=0.07, max_value=0.1),
    'constant': dict(name='constant', value=0.1),
    'multistep': dict(name='multistep', init_value=0.1,
                      boundaries_epochs=[2], factor=0.1),
    'cosine_warm_restarts': dict(name='cosine_warm_restarts', init_value=0.1,
                                 decay_steps_epochs=1, period_multiplier=2,
                                 end_value=1e-4),
    'knee': dict(name='knee', peak_value=0.1, warmup_steps=0,
                 explore_steps_epochs=1),
    'one_cycle': dict(name='one_cycle', peak_value=0.1, pct_start=0.45,
                      div_factor=10.0, final_div_factor=10.0),
    'cyclic_triangular': dict(name='cyclic_triangular', init_value=0.01,
                              peak_value=0.1, up_steps_epochs=0.5),
    # The same with PyTorch's CyclicLR momentum cycling (0.9 to 0.8), as the
    # authors' CIFAR baseline ran.
    'cyclic_triangular_momentum': dict(
        name='cyclic_triangular', init_value=0.01, peak_value=0.1,
        up_steps_epochs=0.5, cycle_momentum=True, base_momentum=0.8,
        max_momentum=0.9),
}


def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
  return base.with_schedule(base.base_config(), SCHEDULES, schedule)
