"""What every config shares, and the paper's schedules by name.

A config file builds on `base_config()` and picks one schedule from
`paper_schedules(...)`, so each paper setting can run PLRS or any of its
baselines: `--config=train/configs/cifar100_resnet110.py:knee`.

A CIFAR epoch is 390 steps here, 391 in the authors' trainer
------------------------------------------------------------

Their DataLoader keeps the last partial batch: 50,000 images in batches of 128
are 390 full batches and one of 80, 391 steps. `input_pipeline` drops it, so
that every step has the same global batch shape, split evenly over the devices;
keeping it would need a second compiled step for the ragged batch, or padding
with rows weighted 0 in the loss and left out of BatchNorm's (cross-replica)
statistics, which the models and the train step do not implement. What that
changes:

- each epoch trains on 49,920 of the 50,000 images: 80 (0.16%) are skipped, a
  different 80 every epoch, since each epoch is a fresh permutation, so over a
  run every image is seen about equally often;
- 500 epochs are 195,000 updates instead of 195,500 (0.26% fewer); DenseNet's
  batch 64 gives 781 steps an epoch (16 images skipped) against their 782;
- fields in epochs (`*_epochs`: multi-step boundaries, the knee's exploration,
  warm-restart periods, per-epoch PLRS draws, `total_steps` from
  `num_epochs`) are multiplied by 390, so they fall on the same epochs as
  theirs, each 0.26% fewer steps in; fields in steps (the cyclic schedule's
  `up_steps=8000`) keep their steps and so span 0.26% more epochs (20.51
  against 20.46). No other rate changes.

Tiny ImageNet (100,000 images, batch 50) and ImageNet-1k at batch 256 (1,281,167
images: 5,004 steps here, 5,005 there, 143 images skipped an epoch) are
affected the same way, if at all.
"""

import ml_collections


def _task(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The data and model fields, the same in training and meta-training."""
  config.dataset = 'digits'
  config.data_dir = ml_collections.FieldReference(None, str)
  config.train_split = 'train'
  config.test_split = 'test'
  # Seeds the digits train/test split (and meta-training's held-out set).
  config.split_seed = 0
  # Train on this many images, as many of each class, drawn with split_seed
  # (the same subset whatever `seed`); 0: all. Held-in-memory datasets only.
  config.train_subset = 0
  config.model = 'resnet8'
  config.model_kwargs = ml_collections.ConfigDict()
  return config


def base_config() -> ml_collections.ConfigDict:
  """Fields every config has; each config file overrides some of them."""
  config = _task(ml_collections.ConfigDict())
  config.num_epochs = 3
  config.batch_size = 32
  config.eval_batch_size = 512
  config.seed = 0
  # Plain SGD, as in the paper.
  config.momentum = 0.0
  config.nesterov = False
  config.weight_decay = 0.0
  # 'sgd' (the above, at the schedule's rate), 'two_regime', 'autodrop' or
  # 'mlr_snet' (each reads its own section below), or any optax function by name with
  # `optimizer_kwargs`: an optimizer ('adam') runs at the schedule's rate, a
  # transform ('contrib.reduce_on_plateau') follows the SGD above. See
  # train/optimizers.py.
  config.optimizer = 'sgd'
  config.optimizer_kwargs = ml_collections.ConfigDict()
  # plrs_jax.two_regime_sgd_adam: plain SGD at the schedule's rate (momentum
  # must be 0), then Adam at `small_learning_rate`, from `switch_step` (or
  # `switch_step_epochs`) on. Both must be set.
  config.two_regime = ml_collections.ConfigDict({
      'small_learning_rate': ml_collections.FieldReference(None, float),
      'switch_step': ml_collections.FieldReference(None, int),
      'switch_step_epochs': ml_collections.FieldReference(None, float),
  })
  # plrs_jax.scale_by_autodrop after the SGD above, one epoch being the
  # run's epoch; the defaults are the authors' CIFAR scripts'. Their absolute
  # floor of 1e-4 is min_scale = 1e-4 / the schedule's rate.
  config.autodrop = ml_collections.ConfigDict({
      'drop_factor': 0.2,
      'threshold': 0.01,
      'max_threshold': 1.0,
      'min_scale': 0.0,
      'window_epochs': 20,
      'average_weights': True,
  })
  # plrs_jax.mlr_snet: plain SGD with coupled weight decay (momentum must be
  # 0) at the rate of a meta-trained MLR-SNet; the schedule is not used.
  # `checkpoint`: the mlr_snet.npz that `python -m train.meta_train` writes
  # (or its workdir); None is the net shipped in train/mlr_snet_digits.npz.
  # `transfer`: 'frozen' runs its last snapshot throughout, 'snapshots' each
  # snapshot in turn (the official transfer). gamma is set by the mean
  # training loss of the initial model, measured at the start.
  config.mlr_snet = ml_collections.ConfigDict({
      'checkpoint': ml_collections.FieldReference(None, str),
      'transfer': 'frozen',
  })
  # 4-pixel pad, random crop and horizontal flip, on the device.
  config.augment = False
  config.log_every_steps = 10
  # Stop when the training loss, smoothed over ~10 steps, exceeds this many
  # times the run's first loss (inf: stop only at a non-finite loss).
  config.divergence_factor = 4.0
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


def meta_train_config() -> ml_collections.ConfigDict:
  """Fields of a meta-training config (`python -m train.meta_train`).

  The defaults are the official recipe (xjtushujun/MLR-SNet,
  meta-train/image-classification/meta_train.py, ResNet on CIFAR-10): plain
  SGD at MLR-SNet's rate with coupled weight decay 5e-4, batch 128, 200
  epochs; 1,000 training images held out (class-balanced here) for the meta
  loss, on batches of 128; a meta step every 300 steps (theirs counts the
  steps within each epoch, so it fires once an epoch on CIFAR; here it
  counts all steps); Adam at 1e-3 with weight decay 1e-4 (PyTorch's, added
  to the gradient) on the net; the snapshots after meta-epochs 1, 100 and
  200 transferred. A config file overrides some of them.
  """
  config = _task(ml_collections.ConfigDict())
  config.num_epochs = 200
  config.batch_size = 128
  config.eval_batch_size = 512
  config.weight_decay = 5e-4
  # A meta step before the update of every t_val-th step (counted from 1).
  config.t_val = 300
  # The held-out set: num_meta training examples, as many of each class.
  config.num_meta = 1000
  config.meta_batch_size = 128
  config.meta_learning_rate = 1e-3
  config.meta_weight_decay = 1e-4
  # The meta-epochs after which the net is kept for the transfer.
  config.snapshot_epochs = (1, 100, 200)
  config.seed = 0
  # Every step's rate and loss are logged, fetched every this many steps.
  config.log_every_steps = 100
  config.progress = True
  return config


def paper_schedules(*, plrs_bounds: tuple[float, float], constant: float,
                    multistep: dict, peak: float = 0.1,
                    knee_explore_epochs: int = 100) -> dict[str, dict]:
  """The paper's schedules (arXiv 2407.07613, Section 5 and appendix).

  Epoch-valued fields (`*_epochs`) are converted to steps by the trainer.
  Where the paper's text and the authors' calls differ, these follow the calls
  (janani-suresh-97/uniform_lr_scheduler):

  - one-cycle: `final_div_factor=1e4`, PyTorch's default, which their
    `OneCycleLR` call leaves unset; the paper describes a 10x final decay.
  - knee: explore for `knee_explore_epochs`, then decay to 0 at the end of the
    run, as their `KneeLRScheduler(explore_steps=39100, total_steps=195500)`
    (100 and 500 epochs of their 391 steps); given in epochs here, so it keeps
    the epochs when an epoch is 390 steps (see CIFAR_EPOCH below).
  - cosine warm restarts: `T_0` = 1 epoch as the paper says. Their call
    (`T_0=1`, commented out) is stepped every batch, which would make the
    first cycle one batch long: ambiguous, so the paper's text wins.

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
                        div_factor=10.0, final_div_factor=1e4),
  }


# The schedule the authors' CIFAR trainer actually runs (the one call not
# commented out): CyclicLR(base_lr=0.01, max_lr=0.1, mode='triangular',
# step_size_up=8000), stepped every batch. 8000 is in steps, so it stays 8000
# steps with a 390-step epoch (20.5 epochs here, 20.46 there).
CIFAR_CYCLIC = dict(name='cyclic_triangular', init_value=0.01, peak_value=0.1,
                    up_steps=8000)
# ... as it ran: the call leaves CyclicLR's cycle_momentum at True, so on their
# SGD(momentum=0) the momentum is 0.9 at step 0 and 0.8 at the peak.
CIFAR_CYCLIC_MOMENTUM = dict(CIFAR_CYCLIC, cycle_momentum=True,
                             base_momentum=0.8, max_momentum=0.9)


def cifar_schedules(**kwargs) -> dict[str, dict]:
  """`paper_schedules(**kwargs)` plus the authors' CIFAR cyclic schedule.

  Where every CIFAR setting departs from the paper's text or the authors'
  code, and why:

  - an epoch is 390 steps, theirs 391: the last partial batch is dropped (the
    module docstring says exactly what that changes);
  - one-cycle's final_div_factor is 1e4 and the knee counts from 1, as their
    calls (see `paper_schedules`);
  - their CIFAR trainer's active scheduler, CyclicLR from 0.01 to 0.1 with
    step_size_up=8000 steps, is `cyclic_triangular_momentum` as they ran it
    (CyclicLR's default cycle_momentum=True cycles the momentum of their
    SGD(momentum=0) from 0.9 down to 0.8 at the rate's peak and back), and
    `cyclic_triangular` with plain SGD, the paper's protocol for every
    method;
  - their trainer steps every scheduler after every batch, so the commented
    MultiStepLR(milestones=[100, 150]) would drop at batches 100 and 150 and
    CosineAnnealingWarmRestarts(T_0=1) restart every batch: `multistep` and
    `cosine_warm_restarts` follow the paper's epochs instead.

  Args:
    **kwargs: the arguments of `paper_schedules`.

  Returns:
    Schedule configs by name.
  """
  return {**paper_schedules(**kwargs), 'cyclic_triangular': CIFAR_CYCLIC,
          'cyclic_triangular_momentum': CIFAR_CYCLIC_MOMENTUM}


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
  """Sets `config.schedule` to `schedules[name]`, with a clear error.

  List values become tuples: the command line can override a tuple field
  (`--config.schedule.boundaries_epochs=[60,120]`) but not a list field.
  """
  if name not in schedules:
    raise ValueError(f'unknown schedule {name!r} for this config; choose one '
                     f'of {", ".join(schedules)}.')
  config.schedule = ml_collections.ConfigDict({
      field: tuple(value) if isinstance(value, list) else value
      for field, value in schedules[name].items()})
  return config
