"""Every field of `python -m train` and of `python -m train.meta_train`.

A config file starts from one of these and sets what its setting changes;
`--config.FIELD=...` overrides any of them.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def base_config() -> ml_collections.ConfigDict:
  """The app's fields, at values that train offline in under a minute."""
  config = ml_collections.ConfigDict()

  # The data: a TFDS name at data_dir, or 'digits' / 'fashion_mnist' offline.
  config.dataset = 'digits'
  config.data_dir = placeholder(str)
  config.train_split = 'train'
  config.test_split = 'test'
  # Seeds the digits train/test split, the validation split and train_subset.
  config.split_seed = 0
  # Train on this many images, as many of each class (0: all; in-memory
  # datasets only), the same whatever `seed`.
  config.train_subset = 0
  # Hold out this many training images (as many of each class) to evaluate
  # every epoch, for tuning without the test set (0: none).
  config.validation_split = 0
  # 4-pixel pad, random crop and horizontal flip, on the device.
  config.augment = False

  config.model = 'resnet8'
  config.model_kwargs = {}

  config.num_epochs = 3
  config.batch_size = 32
  config.eval_batch_size = 512
  config.seed = 0

  # The learning rate: `schedule` (set by each config file) names a
  # plrs_jax.create_schedule schedule and its arguments. A duration is given
  # one way: in steps, `_epochs` or `_of_run` (train/durations.py).
  # Plain SGD, as the paper: 'sgd', 'two_regime', 'autodrop', 'mlr_snet'
  # (each reads its section below) or an optax function with
  # `optimizer_kwargs` (train/optimizers.py).
  config.optimizer = 'sgd'
  config.optimizer_kwargs = {}
  config.momentum = 0.0
  config.nesterov = False
  config.weight_decay = 0.0

  # plrs_jax.two_regime_sgd_adam: SGD at the schedule's rate, then Adam at
  # small_learning_rate from the switch on.
  config.two_regime = ml_collections.ConfigDict()
  config.two_regime.small_learning_rate = placeholder(float)
  config.two_regime.switch_step = placeholder(int)
  config.two_regime.switch_step_epochs = placeholder(float)
  config.two_regime.switch_step_of_run = placeholder(float)

  # plrs_jax.scale_by_autodrop after SGD, at its authors' CIFAR defaults
  # (their 1e-4 floor is min_scale = 1e-4 / the schedule's rate).
  config.autodrop = ml_collections.ConfigDict()
  config.autodrop.drop_factor = 0.2
  config.autodrop.threshold = 0.01
  config.autodrop.max_threshold = 1.0
  config.autodrop.min_scale = 0.0
  config.autodrop.window_epochs = 20
  config.autodrop.average_weights = True

  # plrs_jax.mlr_snet: checkpoint is a meta_train mlr_snet.npz or its
  # workdir (None: train/mlr_snet_digits.npz); transfer 'frozen' (its last
  # snapshot) or 'snapshots' (each in turn, the official transfer).
  config.mlr_snet = ml_collections.ConfigDict()
  config.mlr_snet.checkpoint = placeholder(str)
  config.mlr_snet.transfer = 'frozen'

  # Stop when the training loss, smoothed over ~10 steps, exceeds this many
  # times the run's first (inf: only at a non-finite loss).
  config.divergence_factor = 4.0
  config.log_every_steps = 10
  config.keep_checkpoints = 2
  config.progress = True

  # 0: all local devices. Multi-host with distributed=True: the coordinator,
  # process count and id from these fields or the environment.
  config.num_devices = 0
  config.distributed = False
  config.coordinator_address = placeholder(str)
  config.num_processes = placeholder(int)
  config.process_id = placeholder(int)
  config.cpu_collectives = placeholder(str)
  return config


def schedule_named(chosen: dict[str, dict], name: str) -> dict:
  """`chosen[name]`, lists as tuples (what `--config.schedule.FIELD=[...]`
  overrides); an unknown name is a ValueError listing the known ones."""
  if name not in chosen:
    raise ValueError(f'unknown schedule {name!r} for this config; choose one '
                     f'of {", ".join(chosen)}.')
  return {field: tuple(value) if isinstance(value, list) else value
          for field, value in chosen[name].items()}


def meta_train_config() -> ml_collections.ConfigDict:
  """Meta-training's fields: the official recipe (xjtushujun/MLR-SNet)."""
  config = ml_collections.ConfigDict()
  config.dataset = 'digits'
  config.data_dir = placeholder(str)
  config.train_split = 'train'
  config.test_split = 'test'
  # Seeds the digits train/test split, train_subset and the held-out set.
  config.split_seed = 0
  config.train_subset = 0
  config.model = 'resnet8'
  config.model_kwargs = {}

  config.num_epochs = 200
  config.batch_size = 128
  config.eval_batch_size = 512
  config.seed = 0
  # Coupled weight decay, at MLR-SNet's rate.
  config.weight_decay = 5e-4

  # A meta step before the update of every t_val-th step (from 1; the
  # official code counts within each epoch: once an epoch on CIFAR), on
  # num_meta held-out examples, as many of each class.
  config.t_val = 300
  config.num_meta = 1000
  config.meta_batch_size = 128
  # The net's Adam; its weight decay is added to the gradient, as PyTorch's.
  config.meta_learning_rate = 1e-3
  config.meta_weight_decay = 1e-4
  # The nets kept for the transfer, after these epochs.
  config.snapshot_epochs = (1, 100, 200)

  # Each step's rate and loss are logged, fetched every log_every_steps.
  config.log_every_steps = 100
  config.progress = True
  return config
