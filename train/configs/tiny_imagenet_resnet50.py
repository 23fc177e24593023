"""The paper's ResNet-50 on Tiny ImageNet (arXiv 2407.07613).

PLRS with L_min, L_max = 0.35, 0.4; plain SGD, batch 50, 100 epochs, 64x64
images with pad + crop + flip augmentation. The authors drew one rate per
epoch on this dataset: `:plrs_per_epoch` does that, `:plrs` draws every step.

TensorFlow Datasets has no Tiny ImageNet builder: prepare it as a TFDS dataset
named `tiny_imagenet` (splits `train` and `validation`, features `image`
64x64x3 and `label` with 200 classes), e.g. with `tfds new` and `tfds build
--file_format=array_record`, then

    python -m train --config=train/configs/tiny_imagenet_resnet50.py \
        --config.data_dir=DIR --workdir=RUN
"""

import ml_collections

from train.configs import base

# The paper gives no multi-step or knee timing for this 100-epoch run; these
# scale the CIFAR ones (/10 at 30, 60, 90; explore for half the run).
SCHEDULES = base.paper_schedules(
    plrs_bounds=(0.35, 0.4), constant=0.1,
    multistep=dict(init_value=0.1, boundaries_epochs=[30, 60, 90],
                   factor=0.1),
    knee_explore_epochs=50)


def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
  return base.paper_config(dataset='tiny_imagenet', model='resnet50',
                           batch_size=50, num_epochs=100, schedules=SCHEDULES,
                           schedule=schedule, test_split='validation',
                           eval_batch_size=500, log_every_steps=200)
