"""Durations in a config: `<arg>` in steps, `<arg>_epochs` in epochs or
`<arg>_of_run` as a fraction of the run, exactly one of them (as big_vision's
`u.steps`), converted to steps once the run's length is known."""

from collections.abc import Iterable, Mapping
import math
import numbers
from typing import Any

from train import errors

ConfigError = errors.ConfigError
UNITS = ('', '_epochs', '_of_run')
# The config sections whose durations train/optimizers.py converts.
SECTIONS = ('schedule', 'two_regime')


def counts_steps(arg: str) -> bool:
  """Whether a schedule's or optimizer's argument is a number of steps (or a
  list of them), which a config may give in any of `UNITS`.
    >>> counts_steps('explore_steps'), counts_steps('warmup_fraction')
    (True, False)
  """
  return arg.endswith(('_steps', '_step')) or arg == 'boundaries'


def _split(field: str) -> tuple[str, str]:
  for unit in UNITS[1:]:
    if field.endswith(unit):
      return field[:-len(unit)], unit
  return field, ''


def _given(section: Mapping[str, Any]) -> dict[str, list[str]]:
  """{arg: the fields that give it} of the durations set (not None)."""
  given = {}
  for field, value in section.items():
    arg, _ = _split(field)
    if counts_steps(arg) and value is not None:
      given.setdefault(arg, []).append(field)
  return given


def check_one_way(config: Mapping[str, Any]) -> None:
  """Raises ConfigError where a duration of `SECTIONS` is given two ways.
    >>> check_one_way({'schedule': {'explore_steps': 10,
    ...                             'explore_steps_epochs': 1}})
    Traceback (most recent call last):
    ...
    train.errors.ConfigError: config.schedule.explore_steps=10 and \
config.schedule.explore_steps_epochs=1 both give explore_steps: keep one (a \
--config flag replaces the config file's value in another unit).
  """
  for name in SECTIONS:
    section = config.get(name) or {}
    for fields in _given(section).values():
      if len(fields) > 1:
        a, b = fields[:2]
        raise ConfigError(
            f'config.{name}.{a}={section[a]!r} and config.{name}.{b}='
            f'{section[b]!r} both give {_split(a)[0]}: keep one (a --config '
            "flag replaces the config file's value in another unit).")


def prefer_overrides(config: Any, overridden: Iterable[str]) -> None:
  """A duration set by a --config flag (`overridden`: the flags' dotted
  paths) replaces the config file's value of it in another unit, which is
  removed (set to None where the section declares its fields).
    >>> from train.configs import default
    >>> config = default.get_config('knee')
    >>> config.schedule.explore_steps = 10
    >>> prefer_overrides(config, ['schedule.explore_steps'])
    >>> sorted(config.schedule)
    ['explore_steps', 'name', 'peak_value', 'warmup_steps']
  """
  overridden = set(overridden)
  for path in overridden:
    name, _, field = path.rpartition('.')
    arg, _ = _split(field)
    if name not in SECTIONS or not counts_steps(arg):
      continue
    section = config[name]
    for other in (arg + unit for unit in UNITS):
      if (other != field and f'{name}.{other}' not in overridden
          and section.get(other) is not None):
        # The schedule's fields are the schedule's arguments; other sections
        # declare theirs (train/configs/base.py).
        if name == 'schedule':
          del section[other]
        else:
          section[other] = None


def _problem(value: Any) -> bool:
  return (isinstance(value, bool) or not isinstance(value, numbers.Real)
          or not math.isfinite(value) or value < 0)


def to_steps(section: Mapping[str, Any], name: str, *, steps_per_epoch: int,
             num_steps: int) -> dict[str, Any]:
  """`section` (config.`name`) as a dict, each `<arg>_epochs` and
  `<arg>_of_run` replaced by `<arg>` in steps (rounded; None dropped). A
  ConfigError names the field the user wrote where a duration is given two
  ways, is negative, or is above 0 but rounds to 0 steps, and where a unit
  is given to an argument that counts no steps.
    >>> to_steps({'value': 0.1, 'boundaries_epochs': [1, 2.5],
    ...           'explore_steps_of_run': 0.2}, 'schedule',
    ...          steps_per_epoch=10, num_steps=30)
    {'value': 0.1, 'boundaries': [10, 25], 'explore_steps': 6}
    >>> to_steps({'up_steps_of_run': 0.05}, 'schedule', steps_per_epoch=8,
    ...          num_steps=8)
    Traceback (most recent call last):
    ...
    train.errors.ConfigError: config.schedule.up_steps_of_run=0.05 is 0.4 \
of a step in this run of 8 steps: give at least 0.125 (1 step), or a number \
of steps as config.schedule.up_steps.
  """
  check_one_way({name: section})
  kwargs = {}
  for field, value in section.items():
    arg, unit = _split(field)
    if unit and not counts_steps(arg):
      raise ConfigError(
          f'config.{name}.{field}={value!r}: {arg} counts no steps, so it '
          f'takes no {unit} form; set config.{name}.{arg} itself.')
    if not counts_steps(arg):
      kwargs[field] = value
      continue
    if value is None:
      continue
    values = value if isinstance(value, (list, tuple)) else [value]
    if not unit:
      if any(_problem(v) for v in values):
        raise ConfigError(f'config.{name}.{field}={value!r} must be a number '
                          'of steps >= 0.')
      kwargs[field] = value
      continue
    size = steps_per_epoch if unit == '_epochs' else num_steps
    where = (f'at {steps_per_epoch} steps an epoch' if unit == '_epochs' else
             f'in this run of {num_steps} steps')
    steps = []
    for v in values:
      if _problem(v):
        raise ConfigError(
            f'config.{name}.{field}={value!r} must be '
            + ('epochs >= 0.' if unit == '_epochs' else
               'a fraction of the run >= 0.'))
      steps.append(int(round(v * size)))
      if v and not steps[-1]:
        raise ConfigError(
            f'config.{name}.{field}={value!r} is {v * size:.2g} of a step '
            f'{where}: give at least {1 / size:.3g} (1 step), or a number of '
            f'steps as config.{name}.{arg}.')
    kwargs[arg] = steps if isinstance(value, (list, tuple)) else steps[0]
  return kwargs
