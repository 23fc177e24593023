"""The paper's ResNet-50 on Tiny ImageNet as the authors ran it: a TFDS
`tiny_imagenet` (train, validation; 64x64x3, 200 labels) at data_dir, e.g. by
`tfds new` and `tfds build --file_format=array_record`."""

from train.configs import base

# PLRS per epoch (`:plrs_per_step`: per step), momentum 0.9 (paper: plain SGD),
# a 64x64 stem (3x3, stride 1, no max-pool); CIFAR's knee, multi-step scaled.
_PAPER = base.paper_schedules(plrs_bounds=(0.35, 0.4), knee_explore_epochs=50,
    multistep=dict(init_value=0.1, boundaries_epochs=[30, 60, 90], factor=0.1))
SCHEDULES, get_config = base.setting(
    {'plrs': _PAPER.pop('plrs_per_epoch'), 'plrs_per_step': _PAPER.pop('plrs'),
     **_PAPER}, dataset='tiny_imagenet', model='resnet50', batch_size=50,
    num_epochs=100, test_split='validation', eval_batch_size=500,
    log_every_steps=200, momentum=0.9, weight_decay=1e-4)
