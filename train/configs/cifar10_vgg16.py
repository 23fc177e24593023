"""The paper's VGG-16 on CIFAR-10 (arXiv 2407.07613).

PLRS with L_min, L_max = 0.07, 0.1, drawn every step; plain SGD (no momentum,
no weight decay), batch 128, 500 epochs, 4-pixel pad + crop + flip
augmentation. Needs a prepared TFDS cifar10 (see README); every baseline of
the paper, and the cyclic schedule the authors' CIFAR trainer runs, is one
argument away:

    python -m train --config=train/configs/cifar10_vgg16.py --workdir=DIR
    python -m train --config=train/configs/cifar10_vgg16.py:knee --workdir=DIR

Where this departs from the paper's text or the authors' code: the points
common to the CIFAR settings (390-step epochs, one-cycle's final_div_factor
1e4, the knee counting from 1, their CyclicLR with its momentum cycling as
`:cyclic_triangular_momentum` and with plain SGD as `:cyclic_triangular`,
their per-batch stepping of MultiStepLR) are listed in
`base.cifar_schedules`. Specific to this setting:

- constant baseline 0.05 and multi-step /10 every 30 epochs: the paper's
  text for VGG-16 (the authors' trainer has no VGG-specific call).
"""

import ml_collections

from train.configs import base

SCHEDULES = base.cifar_schedules(
    plrs_bounds=(0.07, 0.1), constant=0.05,
    multistep=dict(init_value=0.1, boundaries_epochs=list(range(30, 500, 30)),
                   factor=0.1))


def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
  return base.paper_config(dataset='cifar10', model='vgg16',
                           batch_size=128, num_epochs=500,
                           schedules=SCHEDULES, schedule=schedule)
