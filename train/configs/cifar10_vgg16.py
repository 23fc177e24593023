"""The paper's VGG-16 on CIFAR-10 (`base.cifar_setting`): constant 0.05 and
multi-step /10 every 30 epochs are its text (the trainer has no VGG call)."""

from train.configs import base

SCHEDULES, get_config = base.cifar_setting(
    'cifar10', 'vgg16', plrs_bounds=(0.07, 0.1), constant=0.05, multistep=dict(
        init_value=0.1, boundaries_epochs=list(range(30, 500, 30)), factor=0.1))
