"""The paper's DenseNet-40-12 on CIFAR-100 (arXiv 2407.07613).

PLRS with L_min, L_max = 0.1, 0.2; plain SGD (no momentum, no weight decay),
batch 64, 500 epochs, 4-pixel pad + crop + flip augmentation. Needs a
prepared TFDS cifar100 (see README); every baseline of the paper is one argument
away:

    python -m train --config=train/configs/cifar100_densenet40_12.py --workdir=DIR
    python -m train --config=train/configs/cifar100_densenet40_12.py:knee --workdir=DIR
"""

import ml_collections

from train.configs import base

SCHEDULES = base.paper_schedules(
    plrs_bounds=(0.1, 0.2), constant=0.1,
    multistep=dict(init_value=0.1, boundaries_epochs=[150, 225], factor=0.1))


def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
  return base.paper_config(dataset='cifar100', model='densenet40_12', batch_size=64,
                           num_epochs=500, schedules=SCHEDULES,
                           schedule=schedule)
