"""What every config shares, and the paper's schedules by name.

A config file builds on `base_config()` and picks one schedule from
`paper_schedules(...)`, so each paper setting can run PLRS or any of its
baselines: `--config=train/configs/cifar100_resnet110.py:knee`.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Fields every config has; each config file overrides some of them."""
  config = ml_collections.ConfigDict()
  config.dataset = 'digits'
  config.data_dir = ml_collections.FieldReference(None, str)
  config.train_split = 'train'
  config.test_split = 'test'
  config.split_seed = 0
  config.model = 'resnet8'
  config.model_kwargs = ml_collections.ConfigDict()
  config.num_epochs = 3
  config.batch_size = 32
  config.eval_batch_size = 512
  config.seed = 0
  # Plain SGD, as in the paper.
  config.momentum = 0.0
  config.nesterov = False
  config.weight_decay = 0.0
  # 4-pixel pad, random crop and horizontal flip, on the device.
  config.augment = False
  config.log_every_steps = 10
  config.keep_checkpoints = 2
  config.progress = True
  # Devices: all local devices unless set; multi-host with distributed=True
  # (coordinator, process count and id from these fields or the environment).
  config.num_devices = 0
  config.distributed = False
  config.coordinator_address = ml_collections.FieldReference(None, str)
  config.num_processes = ml_collections.FieldReference(None, int)
  config.process_id = ml_collections.FieldReference(None, int)
  config.cpu_collectives = ml_collections.FieldReference(None, str)
  return config


def paper_schedules(*, plrs_bounds: tuple[float, float], constant: float,
                    multistep: dict, peak: float = 0.1,
                    knee_explore_epochs: int = 100) -> dict[str, dict]:
  """The paper's schedules (arXiv 2407.07613, Section 5 and appendix).

  Epoch-valued fields (`*_epochs`) are converted to steps by the trainer.

  Args:
    plrs_bounds: (L_min, L_max) of the setting.
    constant: the constant baseline's rate.
    multistep: `init_value`, `boundaries_epochs` and `factor` of the setting.
    peak: peak rate of the knee, one-cycle and warm-restart baselines.
    knee_explore_epochs: epochs the knee schedule explores at its peak.

  Returns:
    Schedule configs by name.
  """
  low, high = plrs_bounds
  return {
      'plrs': dict(name='plrs', min_value=low, max_value=high),
      # The authors' ImageNet runs drew one rate per epoch.
      'plrs_per_epoch': dict(name='plrs', min_value=low, max_value=high,
                             hold_steps_epochs=1),
      'constant': dict(name='constant', value=constant),
      'multistep': dict(name='multistep', **multistep),
      'cosine_warm_restarts': dict(name='cosine_warm_restarts',
                                   init_value=peak, decay_steps_epochs=1,
                                   period_multiplier=2, end_value=1e-4),
      # Explore at the peak (100 epochs in the paper), then decay to 0.
      'knee': dict(name='knee', peak_value=peak, warmup_steps=0,
                   explore_steps_epochs=knee_explore_epochs),
      'one_cycle': dict(name='one_cycle', peak_value=peak, pct_start=0.45,
                        div_factor=10.0, final_div_factor=10.0),
  }


def paper_config(*, dataset: str, model: str, batch_size: int,
                 num_epochs: int, schedules: dict[str, dict], schedule: str,
                 **overrides) -> ml_collections.ConfigDict:
  """A paper setting: plain SGD with augmentation on a TFDS dataset."""
  config = base_config()
  config.dataset = dataset
  config.model = model
  config.batch_size = batch_size
  config.num_epochs = num_epochs
  config.eval_batch_size = 1000
  config.augment = True
  config.log_every_steps = 100
  config.keep_checkpoints = 3
  for field, value in overrides.items():
    config[field] = value
  return with_schedule(config, schedules, schedule)


def with_schedule(config: ml_collections.ConfigDict, schedules: dict[str, dict],
                  name: str) -> ml_collections.ConfigDict:
  """Sets `config.schedule` to `schedules[name]`, with a clear error."""
  if name not in schedules:
    raise ValueError(f'unknown schedule {name!r} for this config; choose one '
                     f'of {", ".join(schedules)}.')
  config.schedule = ml_collections.ConfigDict(schedules[name])
  return config
