"""The paper's DenseNet-40-12 on CIFAR-100 (arXiv 2407.07613).

PLRS with L_min, L_max = 0.1, 0.2, drawn every step; plain SGD (no momentum,
no weight decay), batch 64, 500 epochs, 4-pixel pad + crop + flip
augmentation. Needs a prepared TFDS cifar100 (see README); every baseline of
the paper, and the cyclic schedule the authors' CIFAR trainer runs, is one
argument away:

    python -m train --config=train/configs/cifar100_densenet40_12.py --workdir=DIR
    python -m train --config=train/configs/cifar100_densenet40_12.py:knee --workdir=DIR

Where this departs from the paper's text or the authors' code: the points
common to the CIFAR settings (390-step epochs, one-cycle's final_div_factor
1e4, the knee counting from 1, their CyclicLR with its momentum cycling as
`:cyclic_triangular_momentum` and with plain SGD as `:cyclic_triangular`,
their per-batch stepping of MultiStepLR) are listed in
`base.cifar_schedules`. Specific to this setting:

- batch 64 (the paper's text): 781 steps an epoch here, 782 in a loader that
  keeps the last partial batch.
"""

import ml_collections

from train.configs import base

SCHEDULES = base.cifar_schedules(
    plrs_bounds=(0.1, 0.2), constant=0.1,
    multistep=dict(init_value=0.1, boundaries_epochs=[150, 225], factor=0.1))


def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
  return base.paper_config(dataset='cifar100', model='densenet40_12',
                           batch_size=64, num_epochs=500,
                           schedules=SCHEDULES, schedule=schedule)
