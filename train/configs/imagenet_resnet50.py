"""The authors' ImageNet-1k run (`trainer_imagenet.py`, not in the paper):
torchvision's ResNet-50, SGD with momentum 0.8 and weight decay 1e-4, batch
256, 80 epochs, one PLRS rate in [0.05, 0.11] per epoch, the first included
(theirs runs at 0.1). Prepare a TFDS `imagenet2012_224` (`train`, `validation`;
`image` 224x224x3, resized and center-cropped; 1000 labels): pad + crop + flip
replace their RandomResizedCrop(224); inputs are normalised, theirs are not.

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
  return base.paper_config(
      dataset='imagenet2012_224', model='resnet50_imagenet', batch_size=256,
      num_epochs=80, schedules=SCHEDULES, schedule=schedule,
      test_split='validation', eval_batch_size=500, log_every_steps=500,
      momentum=0.8, weight_decay=1e-4)
