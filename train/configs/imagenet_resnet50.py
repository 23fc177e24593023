"""The authors' ImageNet-1k run (`trainer_imagenet.py`, not in the paper): TFDS
`imagenet2012_224` (train, validation; 224x224x3, 1000 labels) at data_dir."""

from train.configs import base

# Theirs: momentum 0.8, one PLRS rate an epoch (their first: 0.1), inputs not
# normalised, RandomResizedCrop(224) (here: pad + crop + flip of center crops).
_PLRS = dict(name='plrs', min_value=0.05, max_value=0.11)
SCHEDULES, get_config = base.setting(
    {'plrs': dict(_PLRS, hold_steps_epochs=1), 'plrs_per_step': _PLRS},
    dataset='imagenet2012_224', model='resnet50_imagenet', batch_size=256,
    num_epochs=80, test_split='validation', eval_batch_size=500,
    log_every_steps=500, momentum=0.8, weight_decay=1e-4)
