"""Default: PLRS on scikit-learn's digits with a small CIFAR-style ResNet,
offline in well under a minute on two CPU cores (`:NAME`: another schedule)."""

from train.configs import base

# The paper's schedules for 3 epochs of 44 steps; bounds as train.range_test's.
_PAPER = base.paper_schedules(plrs_bounds=(0.07, 0.1), knee_explore_epochs=1,
    multistep=dict(init_value=0.1, boundaries_epochs=[2], factor=0.1))
del _PAPER['plrs_per_epoch']
_PAPER['one_cycle']['final_div_factor'] = 10.0
SCHEDULES, get_config = base.setting({**_PAPER, **base.cyclic_schedules(
    init_value=0.01, peak_value=0.1, up_steps_epochs=0.5)}, base.base_config)
