"""The paper's ResNet-50 on Tiny ImageNet as the authors ran it: a TFDS
`tiny_imagenet` (train, validation; 64x64x3, 200 labels) at data_dir, e.g. by
`tfds new` and `tfds build --file_format=array_record`."""

from train.configs import base
from train.configs import paper

# PLRS per epoch (`:plrs_per_step`: per step); CIFAR's knee and multi-step
# scaled to 100 epochs.
_PAPER = paper.schedules(
    plrs_bounds=(0.35, 0.4), knee_explore_epochs=50,
    multistep=dict(init_value=0.1, boundaries_epochs=[30, 60, 90], factor=0.1))
SCHEDULES = {'plrs': _PAPER.pop('plrs_per_epoch'),
             'plrs_per_step': _PAPER.pop('plrs'), **_PAPER}


def get_config(schedule: str = 'plrs'):
  config = paper.get_config()
  config.dataset = 'tiny_imagenet'
  config.test_split = 'validation'
  # A 64x64 stem: 3x3, stride 1, no max-pool.
  config.model = 'resnet50'
  config.batch_size = 50
  config.eval_batch_size = 500
  config.num_epochs = 100
  # The authors' trainer (the paper says plain SGD).
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.log_every_steps = 200
  config.schedule = base.schedule_named(SCHEDULES, schedule)
  return config
