"""What every config shares, and the paper's schedules by name.

Why a CIFAR epoch is 390 steps here, 391 in the authors' trainer, and what that
changes: docs/cifar_epochs.md.
"""

import ml_collections
from ml_collections import config_dict


def _task(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The data and model fields, the same in training and meta-training."""
  config.update(dataset='digits', data_dir=config_dict.placeholder(str),
                train_split='train', test_split='test')
  # split_seed seeds the digits train/test split (and meta-training's held-out
  # set) and train_subset: train on that many images, as many of each class,
  # the same whatever `seed` (0: all; held-in-memory datasets only).
  config.update(split_seed=0, train_subset=0, model='resnet8', model_kwargs={})
  return config


def base_config() -> ml_collections.ConfigDict:
  """Fields every config has; each config file overrides some of them."""
  config = _task(ml_collections.ConfigDict())
  config.update(num_epochs=3, batch_size=32, eval_batch_size=512, seed=0)
  # Plain SGD, as in the paper.
  config.update(momentum=0.0, nesterov=False, weight_decay=0.0)
  # 'sgd', 'two_regime', 'autodrop', 'mlr_snet' (each reads its section below)
  # or an optax function with `optimizer_kwargs`: see train/optimizers.py.
  config.update(optimizer='sgd', optimizer_kwargs={})
  # plrs_jax.two_regime_sgd_adam: plain SGD (momentum 0) at the schedule's
  # rate, then Adam at small_learning_rate from switch_step(_epochs) on.
  config.two_regime = dict(small_learning_rate=config_dict.placeholder(float),
                           switch_step=config_dict.placeholder(int),
                           switch_step_epochs=config_dict.placeholder(float))
  # plrs_jax.scale_by_autodrop after the SGD above; the authors' CIFAR
  # defaults (their floor of 1e-4 is min_scale = 1e-4 / the schedule's rate).
  config.autodrop = dict(drop_factor=0.2, threshold=0.01, max_threshold=1.0,
                         min_scale=0.0, window_epochs=20, average_weights=True)
  # plrs_jax.mlr_snet (momentum 0, no schedule): `checkpoint`, the mlr_snet.npz
  # of `python -m train.meta_train` or its workdir (None: the shipped
  # train/mlr_snet_digits.npz); `transfer`, 'frozen' (its last snapshot
  # throughout) or 'snapshots' (each in turn, the official transfer).
  config.mlr_snet = dict(checkpoint=config_dict.placeholder(str),
                         transfer='frozen')
  # augment: 4-pixel pad, random crop and horizontal flip, on the device.
  config.update(augment=False, log_every_steps=10)
  # Stop when the training loss, smoothed over ~10 steps, exceeds this many
  # times the run's first loss (inf: stop only at a non-finite loss).
  config.divergence_factor = 4.0
  config.update(keep_checkpoints=2, progress=True)
  # num_devices=0: all local devices. Multi-host with distributed=True (the
  # coordinator, process count and id from these fields or the environment).
  config.update(num_devices=0, distributed=False,
                coordinator_address=config_dict.placeholder(str),
                num_processes=config_dict.placeholder(int),
                process_id=config_dict.placeholder(int),
                cpu_collectives=config_dict.placeholder(str))
  return config


def meta_train_config() -> ml_collections.ConfigDict:
  """Fields of a meta-training config (`python -m train.meta_train`): the
  official recipe (xjtushujun/MLR-SNet, ResNet on CIFAR-10)."""
  config = _task(ml_collections.ConfigDict())
  # weight_decay: coupled, at MLR-SNet's rate. A meta step before the update
  # of every t_val-th step (from 1; the official code counts within each epoch:
  # once an epoch on CIFAR), on num_meta held-out examples, as many a class.
  config.update(num_epochs=200, batch_size=128, eval_batch_size=512,
                weight_decay=5e-4, t_val=300, num_meta=1000,
                meta_batch_size=128)
  # The net's Adam; its weight decay is added to the gradient, as PyTorch's.
  config.update(meta_learning_rate=1e-3, meta_weight_decay=1e-4)
  # snapshot_epochs: the nets kept for the transfer. Every step's rate and
  # loss are logged, fetched every log_every_steps.
  config.update(snapshot_epochs=(1, 100, 200), seed=0, log_every_steps=100,
                progress=True)
  return config


def paper_schedules(*, plrs_bounds: tuple[float, float], constant: float,
                    multistep: dict, peak: float = 0.1,
                    knee_explore_epochs: int = 100) -> dict[str, dict]:
  """The paper's schedules (arXiv 2407.07613, Section 5 and appendix).

  `plrs_bounds`: (L_min, L_max); `multistep`: its `init_value`,
  `boundaries_epochs` and `factor`; `peak`: the knee's, one-cycle's and warm
  restarts' peak. docs/cifar_epochs.md: where they depart from the paper.
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
      'knee': dict(name='knee', peak_value=peak, warmup_steps=0,
                   explore_steps_epochs=knee_explore_epochs),
      'one_cycle': dict(name='one_cycle', peak_value=peak, pct_start=0.45,
                        div_factor=10.0, final_div_factor=1e4),
  }


def cyclic_schedules(cyclic: dict) -> dict[str, dict]:
  """`cyclic_triangular`, and `cyclic_triangular_momentum` with PyTorch's
  CyclicLR momentum cycling on SGD(momentum=0): 0.9 at step 0, 0.8 at peaks."""
  return {'cyclic_triangular': cyclic,
          'cyclic_triangular_momentum': dict(
              cyclic, cycle_momentum=True, base_momentum=0.8, max_momentum=0.9)}


# The authors' CIFAR trainer's active schedule, CyclicLR(base_lr=0.01,
# max_lr=0.1, mode='triangular', step_size_up=8000), stepped every batch.
CIFAR_CYCLIC = dict(name='cyclic_triangular', init_value=0.01, peak_value=0.1,
                    up_steps=8000)


def cifar_setting(dataset: str, model: str, batch_size: int = 128, **kwargs):
  """`SCHEDULES, get_config` of a CIFAR setting of the paper: plain SGD, 500
  epochs, augmented, on a prepared TFDS dataset (README); `--config=FILE:NAME`
  picks `paper_schedules(**kwargs)` or `cyclic_schedules(CIFAR_CYCLIC)`."""
  schedules = {**paper_schedules(**kwargs), **cyclic_schedules(CIFAR_CYCLIC)}

  def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
    return paper_config(dataset=dataset, model=model, batch_size=batch_size,
                        num_epochs=500, schedules=schedules, schedule=schedule)

  return schedules, get_config


def paper_config(*, dataset: str, model: str, batch_size: int,
                 num_epochs: int, schedules: dict[str, dict], schedule: str,
                 **overrides) -> ml_collections.ConfigDict:
  """A paper setting: plain SGD with augmentation on a TFDS dataset."""
  config = base_config()
  config.update(dataset=dataset, model=model, batch_size=batch_size,
                num_epochs=num_epochs, eval_batch_size=1000, augment=True,
                log_every_steps=100, keep_checkpoints=3)
  for field, value in overrides.items():
    config[field] = value
  return with_schedule(config, schedules, schedule)


def with_schedule(config: ml_collections.ConfigDict, schedules: dict[str, dict],
                  name: str) -> ml_collections.ConfigDict:
  """Sets `config.schedule` to `schedules[name]`, with a clear error. Lists
  become tuples: `--config.schedule.boundaries_epochs=[60,120]` overrides a
  tuple field, not a list field."""
  if name not in schedules:
    raise ValueError(f'unknown schedule {name!r} for this config; choose one '
                     f'of {", ".join(schedules)}.')
  config.schedule = ml_collections.ConfigDict({
      field: tuple(value) if isinstance(value, list) else value
      for field, value in schedules[name].items()})
  return config
