"""The authors' ImageNet-1k run (`trainer_imagenet.py`, not in the paper): TFDS
`imagenet2012_224` (train, validation; 224x224x3, 1000 labels) at data_dir."""

from train.configs import base
from train.configs import paper

# Theirs: one PLRS rate an epoch (their first: 0.1), inputs not normalised,
# RandomResizedCrop(224) (here: pad + crop + flip of center crops).
_PLRS = dict(name='plrs', min_value=0.05, max_value=0.11)
SCHEDULES = {'plrs': dict(_PLRS, hold_steps_epochs=1), 'plrs_per_step': _PLRS}


def get_config(schedule: str = 'plrs'):
  config = paper.get_config()
  config.dataset = 'imagenet2012_224'
  config.test_split = 'validation'
  config.model = 'resnet50_imagenet'
  config.batch_size = 256
  config.eval_batch_size = 500
  config.num_epochs = 80
  config.momentum = 0.8
  config.weight_decay = 1e-4
  config.log_every_steps = 500
  config.schedule = base.schedule_named(SCHEDULES, schedule)
  return config
