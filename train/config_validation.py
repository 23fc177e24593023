"""Checks a config before a run does any work: each mistake is one
`ConfigError` naming the field, the value and what to use instead."""

from collections.abc import Callable
import inspect
import math
import numbers
from typing import Any

import ml_collections

from train import durations
from train import errors
from train import mlr_snet_file
from train.configs import base

ConfigError = errors.ConfigError

# Those with a recipe (train/optimizers.py), and where each takes its
# settings; optax's take theirs in optimizer_kwargs.
OPTIMIZERS = ('sgd', 'two_regime', 'autodrop', 'mlr_snet')
_SETTINGS = {'sgd': 'config.momentum and config.nesterov',
             **{name: f'config.{name}' for name in OPTIMIZERS[1:]}}
# The recipes that run plain SGD, and why their momentum must be 0.
_PLAIN_SGD = {
    'two_regime': 'before the switch (momentum only rescales the rate in the '
                  'large-step regime)',
    'mlr_snet': 'at the learnt rate, as its nets are meta-trained'}
# A cyclic_triangular schedule's fields of the momentum (PyTorch's CyclicLR).
MOMENTUM_FIELDS = ('cycle_momentum', 'base_momentum', 'max_momentum')
# How a run uses MLR-SNet's snapshots (train/optimizers.py).
TRANSFERS = ('frozen', 'snapshots')


def _check(ok: Callable[[Any], bool],
           problem: str) -> Callable[[Any], str | None]:
  return lambda value: None if ok(value) else problem


def _number(ok: Callable[[Any], bool], problem: str,
            kind: type = numbers.Real) -> Callable[[Any], str | None]:
  """A check that `value` is a `kind` (not a bool) for which `ok` holds."""
  return _check(lambda v: (not isinstance(v, bool) and isinstance(v, kind)
                           and ok(v)), problem)


def _integer(minimum: int):
  return _number(lambda v: v >= minimum, f'must be an integer >= {minimum}',
                 numbers.Integral)


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    **{field: _integer(1) for field in (
        'batch_size', 'eval_batch_size', 'num_epochs', 'log_every_steps',
        'keep_checkpoints')},
    # train_subset 0 is the whole training split.
    **{field: _integer(0) for field in (
        'seed', 'split_seed', 'train_subset', 'validation_split',
        'num_devices')},
    'momentum': _number(lambda v: 0 <= v < 1, 'must be a number in [0, 1)'),
    'weight_decay': _number(lambda v: math.isfinite(v) and v >= 0,
                            'must be a finite number >= 0'),
    'divergence_factor': _number(
        lambda v: v > 1,
        'must be a number > 1 (or inf to stop only at a non-finite loss)'),
    'optimizer': _check(
        lambda v: isinstance(v, str) and (
            v in OPTIMIZERS or optax_function(v) is not None),
        f'must be one of {", ".join(map(repr, OPTIMIZERS))} or the name of '
        "an optax function, such as 'adam'"),
    'mlr_snet.checkpoint': _check(
        lambda v: v is None or mlr_snet_file.resolve(v).is_file(),
        'names no file: give the mlr_snet.npz that python -m '
        'train.meta_train writes (or its workdir), or leave it unset for '
        'the shipped net'),
    'mlr_snet.transfer': _check(
        lambda v: v in TRANSFERS,
        "must be 'frozen' (the last snapshot throughout) or 'snapshots' "
        '(each in turn, as the official transfer)'),
}

_DECAY_RATE = _number(lambda v: 0 <= v < 1, 'must be a number in [0, 1)')
# optax's arguments whose method defines their range, by name: decay rates
# (Adam's b1 and b2, and its kin's); schedule-free's b1 interpolates y from z
# (0: x could not be read back) to x (1).
_OPTAX_ARGUMENTS = {'b1': _DECAY_RATE, 'b2': _DECAY_RATE,
                    'momentum': _DECAY_RATE,
                    'weight_decay': _CHECKS['weight_decay']}
_SCHEDULE_FREE_ARGUMENTS = {
    **_OPTAX_ARGUMENTS,
    'b1': _number(lambda v: 0 < v <= 1, 'must be a number in (0, 1]'),
    'weight_lr_power': _number(lambda v: math.isfinite(v) and v >= 0,
                               'must be a finite number >= 0')}

_META_TRAIN_CHECKS: dict[str, Callable[[Any], str | None]] = {
    **{field: _CHECKS[field] for field in (
        'batch_size', 'eval_batch_size', 'num_epochs', 'log_every_steps',
        'seed', 'split_seed', 'weight_decay')},
    **{field: _integer(1) for field in ('t_val', 'num_meta',
                                        'meta_batch_size')},
    'meta_learning_rate': _number(lambda v: math.isfinite(v) and v > 0,
                                  'must be a finite number > 0'),
    'meta_weight_decay': _CHECKS['weight_decay'],
}


def _check_fields(config: ml_collections.ConfigDict, known: set[str],
                  checks: dict[str, Callable[[Any], str | None]]) -> None:
  unknown = sorted(set(config) - known)
  if unknown:
    raise ConfigError(
        f'config.{unknown[0]} is not a config field. The fields are: '
        f'{", ".join(sorted(known))}.')
  for field, check in checks.items():
    node, present = config, True
    for part in field.split('.'):
      present = present and hasattr(node, 'keys') and part in node
      node = node[part] if present else None
    problem = check(node) if present else None
    if problem:
      raise ConfigError(f'config.{field}={node!r} {problem}.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for the first field a run cannot use: an unknown name,
  a value that would fail late or silently, or fields that contradict each
  other (factories check the rest).
    >>> from train.configs import default
    >>> config = default.get_config()
    >>> config.batch_size = 0
    >>> validate(config)
    Traceback (most recent call last):
    ...
    train.errors.ConfigError: config.batch_size=0 must be an \
integer >= 1.
  """
  _check_fields(config, set(base.base_config()) | {'schedule'}, _CHECKS)
  if 'schedule' not in config or 'name' not in config.schedule:
    raise ConfigError('config.schedule.name is missing: name a schedule, e.g. '
                      '--config.schedule.name=plrs.')
  durations.check_one_way(config)
  _check_optimizer_kwargs(config)
  _check_momentum(config)
  _check_mlr_snet_snapshots(config)


def optax_function(name: str) -> Callable[..., Any] | None:
  """The function of optax that `name` names, or None.
    >>> optax_function('contrib.reduce_on_plateau').__name__
    'reduce_on_plateau'
  """
  # Imported here: a config is checked before JAX is needed.
  import optax  # pylint: disable=g-import-not-at-top
  function = optax
  for part in name.split('.'):
    function = getattr(function, part, None)
  if name.startswith('_') or not callable(function):
    return None
  return function


def takes_learning_rate(name: str) -> bool:
  """Whether `config.optimizer=name` is an optax optimizer that steps at the
  schedule as its own `learning_rate` (else a recipe of `OPTIMIZERS`, or an
  optax transform that follows SGD).
    >>> takes_learning_rate('adam'), takes_learning_rate('sgd')
    (True, False)
  """
  function = None if name in OPTIMIZERS else optax_function(name)
  return function is not None and (
      'learning_rate' in inspect.signature(function).parameters)


def _check_optimizer_kwargs(config: ml_collections.ConfigDict) -> None:
  name, kwargs = config.optimizer, dict(config.optimizer_kwargs)
  if kwargs and name in OPTIMIZERS:
    raise ConfigError(
        f'config.optimizer_kwargs={kwargs!r} are for optax optimizers; '
        f'config.optimizer={name!r} takes its settings from '
        f'{_SETTINGS[name]}: leave optimizer_kwargs empty.')
  checks = (_SCHEDULE_FREE_ARGUMENTS if 'schedule_free' in name else
            _OPTAX_ARGUMENTS)
  for arg, value in kwargs.items():
    problem = checks[arg](value) if arg in checks else None
    if problem:
      raise ConfigError(f'config.optimizer_kwargs.{arg}={value!r} {problem} '
                        f'for {name}.')


def _check_momentum(config: ml_collections.ConfigDict) -> None:
  """SGD's momentum (fixed, Nesterov's, or cycled by the schedule) where the
  optimizer runs SGD with momentum, and only one of them."""
  name, schedule = config.optimizer, config.schedule
  momentum, nesterov = config.momentum, config.get('nesterov', False)
  got = f'got config.momentum={momentum}, config.nesterov={nesterov}'
  given = sorted(set(MOMENTUM_FIELDS) & set(schedule))
  if given and schedule.name != 'cyclic_triangular':
    raise ConfigError(
        f'config.schedule.{given[0]}={schedule[given[0]]!r} belongs to a '
        "cyclic_triangular schedule (as in PyTorch's CyclicLR), not "
        f'config.schedule.name={schedule.name!r}: remove it.')
  cycles = schedule.get('cycle_momentum')
  if cycles and momentum:
    raise ConfigError(
        f'config.schedule.cycle_momentum={cycles!r} cycles the momentum '
        "between base_momentum and max_momentum (as PyTorch's CyclicLR): set "
        f'config.momentum=0, got config.momentum={momentum}.')
  own_rate = takes_learning_rate(name)
  if cycles and (name in _PLAIN_SGD or own_rate):
    raise ConfigError(
        f'config.schedule.cycle_momentum={cycles!r} cycles the sgd '
        f"optimizer's momentum; config.optimizer={name!r} has none: set "
        "config.optimizer='sgd', or leave cycle_momentum unset.")
  if name in _PLAIN_SGD and (momentum or nesterov):
    raise ConfigError(
        f'config.optimizer={name!r} runs plain SGD {_PLAIN_SGD[name]}: set '
        f'config.momentum=0 and config.nesterov=False, {got}.')
  if own_rate and (momentum or nesterov):
    raise ConfigError(
        "config.momentum and config.nesterov are the sgd optimizer's; "
        f'config.optimizer={name!r} takes its own arguments in '
        'config.optimizer_kwargs: set config.momentum=0 and '
        f'config.nesterov=False, {got}.')


def _check_mlr_snet_snapshots(config: ml_collections.ConfigDict) -> None:
  if config.optimizer != 'mlr_snet' or config.mlr_snet.transfer != 'snapshots':
    return
  checkpoint = config.mlr_snet.checkpoint
  try:
    count = len(mlr_snet_file.load(checkpoint).snapshots)
  except ValueError as e:
    raise ConfigError(
        f'config.mlr_snet.checkpoint={checkpoint!r}: {e}') from None
  if config.num_epochs < count:
    raise ConfigError(
        f"config.mlr_snet.transfer='snapshots' runs each of the {count} "
        f'snapshots for config.num_epochs // {count} epochs: set '
        f'config.num_epochs >= {count}, got {config.num_epochs}, or '
        "transfer='frozen'.")


def validate_meta_train(config: ml_collections.ConfigDict) -> None:
  """As `validate`, for `python -m train.meta_train`'s config: also the
  snapshot epochs are the run's, in order, and a meta batch fits.
    >>> from train.configs import meta_train_digits
    >>> config = meta_train_digits.get_config()
    >>> config.snapshot_epochs = (1, 30, 90)
    >>> validate_meta_train(config)
    Traceback (most recent call last):
    ...
    train.errors.ConfigError: config.snapshot_epochs=(1, 30, 90) must be \
epochs of the run, 1 to config.num_epochs=60, in order.
  """
  _check_fields(config, set(base.meta_train_config()), _META_TRAIN_CHECKS)
  epochs = config.snapshot_epochs
  if (not epochs or not all(_integer(1)(e) is None for e in epochs)
      or list(epochs) != sorted(epochs) or epochs[-1] > config.num_epochs):
    raise ConfigError(
        f'config.snapshot_epochs={epochs!r} must be epochs of the run, 1 to '
        f'config.num_epochs={config.num_epochs}, in order.')
  if config.meta_batch_size > config.num_meta:
    raise ConfigError(
        f'config.meta_batch_size={config.meta_batch_size} is larger than the '
        f'held-out set, config.num_meta={config.num_meta}.')


def build_or_config_error(field: str, factory: Callable[..., Any], *args,
                          **kwargs) -> Any:
  """factory(*args, **kwargs), its ValueError or TypeError (factories check
  their arguments before any JAX work) reported as a mistake in `field`.
    >>> build_or_config_error('model', dict, 1)
    Traceback (most recent call last):
    ...
    train.errors.ConfigError: config.model: 'int' object is not iterable
  """
  try:
    return factory(*args, **kwargs)
  except ConfigError:
    raise  # Already names the field the user wrote.
  except (ValueError, TypeError) as e:
    raise ConfigError(f'config.{field}: {e}') from None


def model(config: ml_collections.ConfigDict, num_classes: int, **kwargs):
  """The model `config.model` and `config.model_kwargs` name, with `kwargs`
  (e.g. `bn_axis_name`); a bad argument is a ConfigError naming the field.
    >>> from train.configs import default
    >>> model(default.get_config(), 10).depth
    8
  """
  from train import models  # pylint: disable=g-import-not-at-top
  field = 'model_kwargs' if config.get('model_kwargs') else 'model'
  return build_or_config_error(
      field, models.create_model, config.model, num_classes=num_classes,
      **kwargs, **config.get('model_kwargs', {}))
