"""Fashion-MNIST with a validation split: 50,000 training and 10,000
validation images (class-balanced, from split_seed), the 10,000 test images,
the MLP, batch 128, plain SGD. `:NAME` picks a method of the tuning study
(benchmarks/study.py); `RATE_FIELDS[NAME]` says which fields its one rate
parameter sets, e.g.

    python -m train --config=train/configs/fashion_mnist.py:cosine \\
        --workdir=/tmp/cosine --config.schedule.peak_value=0.2
"""

from ml_collections.config_dict import placeholder

from train.configs import base

_WARMUP = dict(warmup_fraction=0.05)  # AlgoPerf's SGD baseline: 5%.
# WSD's cooldown over the last 20%, linear; Hagele et al.'s other shapes by
# --config.schedule.decay_shape=cosine or =1-sqrt.
_COOLDOWN = dict(decay_fraction=0.2, decay_shape='linear')
_CONSTANT = dict(name='constant', value=0.1)
_PLRS = dict(name='plrs', min_value=0.07, max_value=0.1)

# Each method as config overrides. Durations scale with the run (`_of_run`),
# as the paper's do with its 500 epochs: knee explores its first 20% (100 of
# 500 epochs), the cyclic schedule rises over 8,000 of 195,500 steps. A flag
# in another unit replaces one (--config.schedule.explore_steps=100).
METHODS: dict[str, dict] = {
    'plrs_range_test': {'schedule': _PLRS},
    'plrs': {'schedule': _PLRS},
    'constant': {'schedule': _CONSTANT},
    'multistep': {'schedule': dict(name='multistep', init_value=0.1,
                                   boundaries_of_run=(0.5, 0.75), factor=0.1)},
    'cosine_warm_restarts': {'schedule': dict(
        name='cosine_warm_restarts', init_value=0.1, decay_steps_epochs=1,
        period_multiplier=2, end_value=1e-4)},
    'knee': {'schedule': dict(name='knee', peak_value=0.1, warmup_steps=0,
                              explore_steps_of_run=0.2)},
    'one_cycle': {'schedule': dict(name='one_cycle', peak_value=0.1,
                                   pct_start=0.45, div_factor=10.0,
                                   final_div_factor=1e4)},
    'cyclic_triangular': {'schedule': dict(
        name='cyclic_triangular', init_value=0.01, peak_value=0.1,
        up_steps_of_run=8000 / 195_500)},
    # SGD at the rate, then Adam at 1e-3 from half the run on.
    'two_regime': {'schedule': _CONSTANT, 'optimizer': 'two_regime',
                   'two_regime': dict(small_learning_rate=1e-3,
                                      switch_step_of_run=0.5)},
    # As its authors' CIFAR scripts run it: momentum 0.9, weight decay 5e-4.
    'autodrop_recipe': {'schedule': _CONSTANT, 'optimizer': 'autodrop',
                        'momentum': 0.9, 'weight_decay': 5e-4},
    # The net shipped in train/, meta-trained on digits: no rate to set.
    'mlr_snet': {'schedule': _CONSTANT, 'optimizer': 'mlr_snet'},
    'linear_decay': {'schedule': dict(name='linear_decay', peak_value=0.1,
                                      **_WARMUP)},
    'cosine': {'schedule': dict(name='cosine', peak_value=0.1, **_WARMUP)},
    # The peak from the warmup's end to the cooldown unless stable_value is
    # set (plrs_wsd's twin in benchmarks/twins.py).
    'wsd': {'schedule': dict(name='wsd', peak_value=0.1,
                             stable_value=placeholder(float), **_COOLDOWN,
                             **_WARMUP)},
    # b1 = 0.9, the same warmup then constant (WSD without decay), stepped as
    # its authors' SGDScheduleFree steps (train/optimizers.schedule_free_sgd);
    # evaluated at its average (train/engine.evaluation_params), BatchNorm's
    # statistics recomputed there.
    'schedule_free_sgd': {
        'schedule': dict(name='wsd', peak_value=1.0, decay_fraction=0.0,
                         **_WARMUP),
        'optimizer': 'contrib.schedule_free_sgd',
        'optimizer_kwargs': {'b1': 0.9}},
    'plrs_linear_decay': {'schedule': dict(
        name='plrs_linear_decay', peak_value=0.1, min_ratio=0.7, **_WARMUP)},
    'plrs_wsd': {'schedule': dict(name='plrs_wsd', peak_value=0.1,
                                  min_ratio=0.7, **_COOLDOWN, **_WARMUP)},
}

# What `:NAME` picks, as in every config file.
SCHEDULES = METHODS

# The schedule fields a method's one rate parameter v sets, each to
# ratio * v: the peak, the other rates in the ratios above (PLRS: L_min =
# 0.7 L_max, the paper's). mlr_snet has none; plrs_range_test's bounds come
# from the range test.
_PEAK = {'peak_value': 1.0}
RATE_FIELDS: dict[str, dict[str, float]] = {
    'plrs': {'min_value': 0.7, 'max_value': 1.0},
    'constant': {'value': 1.0}, 'two_regime': {'value': 1.0},
    'autodrop_recipe': {'value': 1.0}, 'multistep': {'init_value': 1.0},
    'cosine_warm_restarts': {'init_value': 1.0, 'end_value': 1e-3},
    'cyclic_triangular': {'init_value': 0.1, 'peak_value': 1.0},
    **dict.fromkeys(('knee', 'one_cycle', 'linear_decay', 'cosine', 'wsd',
                     'schedule_free_sgd', 'plrs_linear_decay', 'plrs_wsd'),
                    _PEAK)}


def get_config(method: str = 'plrs'):
  """The study's config of `method` (a key of METHODS)."""
  if method not in METHODS:
    raise ValueError(f'unknown method {method!r} for this config; choose one '
                     f'of {", ".join(METHODS)}.')
  config = base.base_config()
  config.dataset = 'fashion_mnist'
  config.validation_split = 10_000
  config.model = 'mlp'
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_epochs = 10
  config.log_every_steps = 100
  for field, value in METHODS[method].items():
    if field == 'schedule':
      config.schedule = base.schedule_named(METHODS, method)['schedule']
    elif isinstance(value, dict):  # In place: unset fields keep their types.
      config[field].update(value)
    else:
      config[field] = value
  return config
