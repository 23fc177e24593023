"""The paper's ResNet-50 on Tiny ImageNet (arXiv 2407.07613), as the authors
ran it: PLRS in [0.35, 0.4] drawn per epoch (`:plrs_per_step`: every step),
SGD with momentum 0.9 and weight decay 1e-4 (the paper's text: plain SGD),
batch 50, 100 epochs; a 64x64 stem (3x3, stride 1, no max-pool); multi-step
and knee timings scaled from CIFAR's. Prepare a TFDS `tiny_imagenet` (`train`,
`validation`; `image` 64x64x3, 200 labels), e.g. with `tfds new` and `tfds
build --file_format=array_record`:

    python -m train --config=train/configs/tiny_imagenet_resnet50.py \
        --config.data_dir=DIR --workdir=RUN
"""

import ml_collections

from train.configs import base

_PAPER = base.paper_schedules(
    plrs_bounds=(0.35, 0.4), constant=0.1,
    multistep=dict(init_value=0.1, boundaries_epochs=[30, 60, 90], factor=0.1),
    knee_explore_epochs=50)
SCHEDULES = {'plrs': _PAPER['plrs_per_epoch'], 'plrs_per_step': _PAPER['plrs'],
             **{name: config for name, config in _PAPER.items()
                if name not in ('plrs', 'plrs_per_epoch')}}


def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
  return base.paper_config(dataset='tiny_imagenet', model='resnet50',
                           batch_size=50, num_epochs=100, schedules=SCHEDULES,
                           schedule=schedule, test_split='validation',
                           eval_batch_size=500, log_every_steps=200,
                           momentum=0.9, weight_decay=1e-4)
