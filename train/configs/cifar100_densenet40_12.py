"""The paper's DenseNet-40-12 on CIFAR-100, batch 64; `base.cifar_setting`."""

from train.configs import base

SCHEDULES, get_config = base.cifar_setting(
    'cifar100', 'densenet40_12', batch_size=64, plrs_bounds=(0.1, 0.2),
    multistep=dict(init_value=0.1, boundaries_epochs=[150, 225], factor=0.1))
