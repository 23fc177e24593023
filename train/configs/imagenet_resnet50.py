"""The authors' ImageNet-1k run: the standard ResNet-50 with PLRS per epoch.

Not in the paper's tables; the authors' `trainer_imagenet.py` runs it:
torchvision's `resnet50()` (7x7 stride-2 stem and max-pool, 224x224 inputs),
SGD with momentum 0.8 and weight decay 1e-4, batch 256, 80 epochs, and
`UniformNoisyLR(min_lr=0.05, max_lr=0.11)` stepped once per epoch, so one
rate per epoch drawn from [0.05, 0.11].

Where this departs from the authors' code, and why:

- data: their RandomResizedCrop(224) and flip need variable-size decoding,
  which `input_pipeline` does not do (it reads fixed-shape images). Prepare
  ImageNet-1k as a TFDS dataset named `imagenet2012_224` (splits `train` and
  `validation`, features `image` 224x224x3, resized and center-cropped, and
  `label` with 1000 classes); this config adds the pad + crop + flip of the
  other settings. Their inputs are not normalised (the Normalize call is
  commented out); ours are, with the dataset's mean and std.
- their first epoch trains at the optimizer's initial rate, 0.1 (the
  scheduler is first stepped after epoch 0); here every epoch, the first
  included, draws from [0.05, 0.11].
- an epoch is 5,004 steps here, 5,005 there (the last partial batch of 143
  images is dropped; see train/configs/base.py).

    python -m train --config=train/configs/imagenet_resnet50.py \
        --config.data_dir=DIR --workdir=RUN
"""

import ml_collections

from train.configs import base

SCHEDULES = {
    'plrs': dict(name='plrs', min_value=0.05, max_value=0.11,
                 hold_steps_epochs=1),
    'plrs_per_step': dict(name='plrs', min_value=0.05, max_value=0.11),
}


def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
  return base.paper_config(dataset='imagenet2012_224', model='resnet50_imagenet',
                           batch_size=256, num_epochs=80, schedules=SCHEDULES,
                           schedule=schedule, test_split='validation',
                           eval_batch_size=500, log_every_steps=500,
                           momentum=0.8, weight_decay=1e-4)
