"""What every config shares, and the paper's schedules by name."""

import ml_collections

_none = ml_collections.config_dict.placeholder


def _task(overrides: dict, **fields) -> ml_collections.ConfigDict:
  """The data and model fields, the same in training and meta-training, then
  `fields`; `overrides` replace any of them."""
  return ml_collections.ConfigDict(dict(
      dataset='digits', data_dir=_none(str), train_split='train',
      # split_seed seeds the digits train/test split (and meta-training's
      # held-out set) and train_subset: train on that many images, as many of
      # each class, the same whatever `seed` (0: all; in-memory datasets only).
      test_split='test', split_seed=0, train_subset=0, model='resnet8',
      model_kwargs={}, **fields) | overrides)


def base_config(**overrides) -> ml_collections.ConfigDict:
  """Fields every config has; each config file overrides some of them."""
  return _task(
      overrides, num_epochs=3, batch_size=32, eval_batch_size=512, seed=0,
      # validation_split: hold out that many training images (as many of each
      # class, drawn with split_seed) to evaluate every epoch, for tuning
      # without the test set (0: none; before train_subset).
      validation_split=0,
      momentum=0.0, nesterov=False, weight_decay=0.0,  # Plain SGD: the paper.
      # 'sgd', 'two_regime', 'autodrop', 'mlr_snet' (each reads its section
      # below) or an optax function (`optimizer_kwargs`): train/optimizers.py.
      optimizer='sgd', optimizer_kwargs={},
      # plrs_jax.two_regime_sgd_adam: plain SGD (momentum 0) at the schedule's
      # rate, then Adam at small_learning_rate from switch_step on. A duration
      # (here or in `schedule`) is given one way: in steps, `_epochs` or
      # `_of_run` (train/durations.py).
      two_regime=dict(small_learning_rate=_none(float), switch_step=_none(int),
                      switch_step_epochs=_none(float),
                      switch_step_of_run=_none(float)),
      # plrs_jax.scale_by_autodrop after the SGD above; the authors' CIFAR
      # defaults (their 1e-4 floor is min_scale = 1e-4 / the schedule's rate).
      autodrop=dict(drop_factor=0.2, threshold=0.01, max_threshold=1.0,
                    min_scale=0.0, window_epochs=20, average_weights=True),
      # plrs_jax.mlr_snet, momentum 0, no schedule. checkpoint: a meta_train
      # mlr_snet.npz or workdir (None: train/mlr_snet_digits.npz); transfer:
      # 'frozen' (its last snapshot) or 'snapshots' (each in turn, official).
      mlr_snet=dict(checkpoint=_none(str), transfer='frozen'),
      # augment: 4-pixel pad, random crop and horizontal flip, on the device.
      # divergence_factor: stop when the training loss, smoothed over ~10 steps,
      # exceeds this many times the run's first (inf: only at a non-finite one).
      augment=False, log_every_steps=10, divergence_factor=4.0,
      # num_devices=0: all local devices. Multi-host with distributed=True (the
      # coordinator, process count and id from these fields or the environment).
      keep_checkpoints=2, progress=True, num_devices=0, distributed=False,
      coordinator_address=_none(str), num_processes=_none(int),
      process_id=_none(int), cpu_collectives=_none(str))


def meta_train_config(**overrides) -> ml_collections.ConfigDict:
  """Meta-training's fields: the official recipe (xjtushujun/MLR-SNet)."""
  return _task(
      overrides, num_epochs=200, batch_size=128, eval_batch_size=512,
      # weight_decay: coupled, MLR-SNet's rate. A meta step before the update of
      # every t_val-th step (from 1; the official code counts within each epoch:
      # once an epoch on CIFAR), on num_meta held-out examples, as many a class.
      weight_decay=5e-4, t_val=300, num_meta=1000, meta_batch_size=128,
      # The net's Adam; its weight decay is added to the gradient, as PyTorch's.
      meta_learning_rate=1e-3, meta_weight_decay=1e-4,
      # snapshot_epochs: the nets kept for the transfer; each step's rate and
      # loss are logged, fetched every log_every_steps.
      snapshot_epochs=(1, 100, 200), seed=0, log_every_steps=100, progress=True)


def paper_schedules(*, plrs_bounds: tuple[float, float], constant: float = 0.1,
                    multistep: dict, peak: float = 0.1,
                    knee_explore_epochs: int = 100) -> dict[str, dict]:
  """The paper's schedules (arXiv 2407.07613; departures: docs/cifar_epochs.md):
  `plrs_bounds` (L_min, L_max); `peak`: the knee's, one-cycle's, restarts'."""
  plrs = dict(name='plrs', min_value=plrs_bounds[0], max_value=plrs_bounds[1])
  return {
      # The authors' ImageNet runs drew one rate per epoch.
      'plrs': plrs, 'plrs_per_epoch': dict(plrs, hold_steps_epochs=1),
      'constant': dict(name='constant', value=constant),
      'multistep': dict(name='multistep', **multistep),
      'cosine_warm_restarts': dict(name='cosine_warm_restarts',
                                   init_value=peak, decay_steps_epochs=1,
                                   period_multiplier=2, end_value=1e-4),
      'knee': dict(name='knee', peak_value=peak, warmup_steps=0,
                   explore_steps_epochs=knee_explore_epochs),
      'one_cycle': dict(name='one_cycle', peak_value=peak, pct_start=0.45,
                        div_factor=10.0, final_div_factor=1e4)}


def cyclic_schedules(**cyclic) -> dict[str, dict]:
  """`cyclic_triangular` of `cyclic`, and `cyclic_triangular_momentum` with
  CyclicLR's momentum cycling on plain SGD: 0.9 at step 0, 0.8 at peaks."""
  cyclic = dict(name='cyclic_triangular', **cyclic)
  return {'cyclic_triangular': cyclic, 'cyclic_triangular_momentum': dict(
      cyclic, cycle_momentum=True, base_momentum=0.8, max_momentum=0.9)}


def paper_config(**fields) -> ml_collections.ConfigDict:
  """A paper setting: plain SGD with augmentation on a TFDS dataset; `fields`
  (dataset, model, batch_size, num_epochs and any others) override."""
  return base_config(**dict(eval_batch_size=1000, augment=True,
                            log_every_steps=100, keep_checkpoints=3) | fields)


def setting(schedules: dict[str, dict], make=paper_config, **fields):
  """`SCHEDULES, get_config`: `make(**fields)` with `schedules[NAME]`, lists as
  tuples (what `--config.schedule.boundaries_epochs=[60,120]` overrides)."""
  def get_config(schedule: str = 'plrs') -> ml_collections.ConfigDict:
    if schedule not in schedules:
      raise ValueError(f'unknown schedule {schedule!r} for this config; choose '
                       f'one of {", ".join(schedules)}.')
    return make(**fields, schedule={
        field: tuple(value) if isinstance(value, list) else value
        for field, value in schedules[schedule].items()})
  return schedules, get_config


def cifar_setting(dataset: str, model: str, batch_size: int = 128, **kwargs):
  """A CIFAR `setting` of the paper: 500 epochs, a TFDS dataset (README), and
  the authors' CyclicLR(0.01, 0.1, step_size_up=8000), stepped per batch."""
  return setting({**paper_schedules(**kwargs), **cyclic_schedules(
      init_value=0.01, peak_value=0.1, up_steps=8000)}, dataset=dataset,
      model=model, batch_size=batch_size, num_epochs=500)
