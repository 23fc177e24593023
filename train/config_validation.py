"""Checks a training config before a run does any work.

Each mistake is reported as one `ConfigError` naming the field, the value and
what to use instead, so that `python -m train` can print it in one line and
exit with status 2 before it creates the workdir.
"""

from collections.abc import Callable
import math
import numbers
from typing import Any

import ml_collections

from train import errors
from train import mlr_snet_file
from train.configs import base


ConfigError = errors.ConfigError


def _integer(minimum: int) -> Callable[[Any], str | None]:
  def check(value):
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
        or value < minimum):
      return f'must be an integer >= {minimum}'
    return None
  return check


def _fraction(*, upper_open: bool) -> Callable[[Any], str | None]:
  interval = '[0, 1)' if upper_open else '[0, 1]'

  def check(value):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
        or not math.isfinite(value) or value < 0
        or value > 1 or (upper_open and value == 1)):
      return f'must be a number in {interval}'
    return None
  return check


def _non_negative(value) -> str | None:
  if (isinstance(value, bool) or not isinstance(value, numbers.Real)
      or not math.isfinite(value) or value < 0):
    return 'must be a finite number >= 0'
  return None


def _greater_than_one(value) -> str | None:
  if (isinstance(value, bool) or not isinstance(value, numbers.Real)
      or not value > 1):
    return 'must be a number > 1 (or inf to stop only at a non-finite loss)'
  return None


# The optimizers with a recipe of this project (train/optimizers.py); any
# function of optax can be named too, and is checked where it is built.
OPTIMIZERS = ('sgd', 'two_regime', 'autodrop', 'mlr_snet')


def _optimizer(value) -> str | None:
  if not isinstance(value, str) or not value:
    return (f'must be one of {", ".join(map(repr, OPTIMIZERS))} or the name '
            "of an optax function, such as 'adam'")
  return None


def _mlr_snet_checkpoint(value) -> str | None:
  if value is not None and not mlr_snet_file.resolve(value).is_file():
    return ('names no file: give the mlr_snet.npz that python -m '
            'train.meta_train writes (or its workdir), or leave it unset for '
            'the shipped net')
  return None


# How a run uses MLR-SNet's snapshots (train/optimizers.py).
TRANSFERS = ('frozen', 'snapshots')


def _transfer(value) -> str | None:
  if value not in TRANSFERS:
    return ("must be 'frozen' (the last snapshot throughout) or 'snapshots' "
            '(each in turn, as the official transfer)')
  return None


# field -> check returning what is wrong, or None.
_CHECKS: dict[str, Callable[[Any], str | None]] = {
    'batch_size': _integer(1),
    'eval_batch_size': _integer(1),
    'num_epochs': _integer(1),
    'log_every_steps': _integer(1),
    'keep_checkpoints': _integer(1),
    'seed': _integer(0),
    'split_seed': _integer(0),
    # 0 is the whole training split; whether the dataset has enough images of
    # each class is checked when it is loaded.
    'train_subset': _integer(0),
    'num_devices': _integer(0),
    'momentum': _fraction(upper_open=True),
    'weight_decay': _non_negative,
    'divergence_factor': _greater_than_one,
    'optimizer': _optimizer,
    'model_kwargs.dropout_rate': _fraction(upper_open=True),
    'mlr_snet.checkpoint': _mlr_snet_checkpoint,
    'mlr_snet.transfer': _transfer,
}


def _lookup(config: ml_collections.ConfigDict, dotted: str) -> tuple[bool, Any]:
  node = config
  for part in dotted.split('.'):
    if not hasattr(node, 'keys') or part not in node:
      return False, None
    node = node[part]
  return True, node


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for the first field a run cannot use.

  Checks the fields' names (every field must be one of `base_config()`'s, or
  `schedule`) and the values that would otherwise fail late or silently:
  sizes and counts, momentum, weight decay, dropout. Schedules, models and
  datasets are checked where they are built, by their own factories.

  Args:
    config: a training config.

  Raises:
    ConfigError: naming the field, the value and the allowed values.

  Example:
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


def _check_fields(config: ml_collections.ConfigDict, known: set[str],
                  checks: dict[str, Callable[[Any], str | None]]) -> None:
  """The first unknown field, or the first value a check refuses."""
  unknown = sorted(set(config) - known)
  if unknown:
    raise ConfigError(
        f'config.{unknown[0]} is not a config field. The fields are: '
        f'{", ".join(sorted(known))}.')
  for field, check in checks.items():
    present, value = _lookup(config, field)
    if present:
      problem = check(value)
      if problem:
        raise ConfigError(f'config.{field}={value!r} {problem}.')


def _positive(value) -> str | None:
  if _non_negative(value) or value == 0:
    return 'must be a finite number > 0'
  return None


_META_TRAIN_CHECKS: dict[str, Callable[[Any], str | None]] = {
    **{field: _CHECKS[field] for field in (
        'batch_size', 'eval_batch_size', 'num_epochs', 'log_every_steps',
        'seed', 'split_seed', 'weight_decay', 'model_kwargs.dropout_rate')},
    't_val': _integer(1),
    'num_meta': _integer(1),
    'meta_batch_size': _integer(1),
    'meta_learning_rate': _positive,
    'meta_weight_decay': _non_negative,
}


def validate_meta_train(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for the first field meta-training cannot use.

  As `validate`, for a config of `python -m train.meta_train` (fields of
  `base.meta_train_config()`); the snapshot epochs must be epochs of the run,
  in order, and a meta batch fits in the held-out set.

  Example:
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


def built(field: str, factory: Callable[..., Any], *args, **kwargs) -> Any:
  """factory(*args, **kwargs), its argument errors reported as config errors.

  The model and schedule factories validate their arguments eagerly, before
  any JAX computation, so a ValueError or TypeError from them is a mistake in
  the config's `field`, not a bug.

  Example:
    >>> built('model', dict, 1)
    Traceback (most recent call last):
    ...
    train.errors.ConfigError: config.model: 'int' object is not iterable
  """
  try:
    return factory(*args, **kwargs)
  except (ValueError, TypeError) as e:
    raise ConfigError(f'config.{field}: {e}') from None
