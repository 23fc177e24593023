"""Schedules chosen by name, so a config can say which one to use."""

from collections.abc import Callable
from typing import Any

import optax

from plrs_jax import baselines
from plrs_jax import plrs
from plrs_jax import warmup_decay

SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    'plrs': plrs.plrs_schedule,
    'constant': baselines.constant_schedule,
    'multistep': baselines.multistep_schedule,
    'cosine_warm_restarts': baselines.cosine_warm_restarts_schedule,
    'knee': baselines.knee_schedule,
    'one_cycle': baselines.one_cycle_schedule,
    'cyclic_triangular': baselines.cyclic_triangular_schedule,
    'linear_decay': warmup_decay.warmup_linear_decay_schedule,
    'cosine': warmup_decay.warmup_cosine_schedule,
    'wsd': warmup_decay.warmup_stable_decay_schedule,
    'plrs_linear_decay': warmup_decay.plrs_linear_decay_schedule,
    'plrs_wsd': warmup_decay.plrs_wsd_schedule,
}


def create_schedule(name: str, **kwargs: Any) -> optax.Schedule:
  """Builds the schedule called ``name`` from keyword arguments.

  Args:
    name: a key of ``SCHEDULES``: ``plrs``, the paper's baselines
      (``constant``, ``multistep``, ``cosine_warm_restarts``, ``knee``,
      ``one_cycle``, ``cyclic_triangular``), today's (``linear_decay``,
      ``cosine``, ``wsd``) and PLRS in their envelopes (``plrs_linear_decay``,
      ``plrs_wsd``).
    **kwargs: the arguments of that schedule's factory (for ``plrs``,
      :func:`plrs_jax.plrs_schedule`; an int seed is a valid ``key``). The
      cooldown's shape of ``wsd`` and ``plrs_wsd`` is one of them,
      ``decay_shape``: ``'linear'``, ``'cosine'`` or ``'1-sqrt'``.

  Returns:
    The schedule, a callable ``count -> learning rate``.

  Raises:
    ValueError: ``name`` is not a known schedule.
    TypeError: ``kwargs`` do not fit the schedule's arguments (Python's
      error, naming the factory and the argument).

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.create_schedule(
    ...     'multistep', init_value=0.1, boundaries=[100, 150], factor=0.1)
    >>> print(round(float(schedule(120)), 6))
    0.01
    >>> plrs = plrs_jax.create_schedule(
    ...     'plrs', key=0, min_value=0.07, max_value=0.1)
    >>> bool(0.07 <= plrs(5) < 0.1)
    True
    >>> wsd = plrs_jax.create_schedule(
    ...     'wsd', peak_value=0.1, total_steps=100, decay_shape='cosine')
    >>> print(round(float(wsd(90)), 6))
    0.05
  """
  if name not in SCHEDULES:
    raise ValueError(
        f'create_schedule: unknown schedule {name!r}; known schedules are '
        f'{", ".join(sorted(SCHEDULES))}.'
    )
  return SCHEDULES[name](**kwargs)
