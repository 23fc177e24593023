"""The paper's ResNet-110 on CIFAR-100; see `base.cifar_setting`."""

from train.configs import base

SCHEDULES, get_config = base.cifar_setting(
    'cifar100', 'resnet110', plrs_bounds=(0.07, 0.1),
    multistep=dict(init_value=0.1, boundaries_epochs=[100, 150], factor=0.1))
