"""The paper's WRN-28-10 on CIFAR-10 (`base.cifar_setting`): multi-step 0.2,
x0.2 at epochs 60, 120, 160 is its text, not the trainer's [100, 150]."""

from train.configs import base

SCHEDULES, get_config = base.cifar_setting(
    'cifar10', 'wrn28_10', plrs_bounds=(0.07, 0.1), multistep=dict(
        init_value=0.2, boundaries_epochs=[60, 120, 160], factor=0.2))
