"""The schedules practitioners pick today, and PLRS inside their envelopes.

Linear decay with a linear warmup (the default of Google's tuning playbook and
of AlgoPerf's SGD baseline), warmup + cosine decay, and warmup-stable-decay
(WSD), each to 0 at ``total_steps``, built from optax's schedules. The two PLRS
variants draw their rate with :func:`plrs_jax.plrs_schedule` between bounds
that follow those shapes.

Durations are fractions of ``total_steps``, rounded to whole steps, so one
config serves every run length.
"""

from typing import Any

import jax.numpy as jnp
import optax

from plrs_jax import plrs
from plrs_jax._validation import check_steps
from plrs_jax._validation import check_value

__all__ = (
    'plrs_linear_decay_schedule',
    'plrs_wsd_schedule',
    'warmup_cosine_schedule',
    'warmup_linear_decay_schedule',
    'warmup_stable_decay_schedule',
)


def _phases(fn: str, peak_value: float, total_steps: int,
            warmup_fraction: float, decay_fraction: float = 0.0,
            min_ratio: float = 1.0) -> tuple[int, int]:
  """Checks the arguments; returns (warmup steps, first step of the decay)."""
  check_value(fn, 'peak_value', peak_value, positive=True)
  check_steps(fn, 'total_steps', total_steps, minimum=1)
  for name, value in (('warmup_fraction', warmup_fraction),
                      ('decay_fraction', decay_fraction),
                      ('min_ratio', min_ratio)):
    if not 0 <= check_value(fn, name, value) <= 1:
      raise ValueError(f'{fn}: `{name}` must be in [0, 1], got {value}.')
  if warmup_fraction + decay_fraction > 1:
    raise ValueError(
        f'{fn}: the warmup and the decay must fit in the run: '
        f'{warmup_fraction=} + {decay_fraction=} > 1.')
  warmup = round(warmup_fraction * total_steps)
  return warmup, total_steps - round(decay_fraction * total_steps)


def _linear(start: float, end: float, steps: int) -> optax.Schedule:
  # optax's linear_schedule is constant at `start` for steps <= 0, and under
  # jit its end of 0 can come out a few ulps below: a rate is never < 0.
  schedule = optax.linear_schedule(start, end, max(steps, 1))
  return lambda count: jnp.maximum(schedule(count), 0.0)


def warmup_linear_decay_schedule(
    peak_value: float, total_steps: int, warmup_fraction: float = 0.05
) -> optax.Schedule:
  r"""Linear warmup from 0 to ``peak_value``, then linear decay to 0.

  .. math::
    \eta_t = v \min(t / W, (T - t) / (T - W))

  with ``W = round(warmup_fraction * T)``: AlgoPerf's SGD baseline and the
  tuning playbook's default (5% warmup).

  Args:
    peak_value: the rate at the end of the warmup, > 0.
    total_steps: T, the run's length; the rate is 0 from step T on.
    warmup_fraction: the warmup's share of the run, in [0, 1].

  Returns:
    An optax schedule.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.warmup_linear_decay_schedule(0.1, 100)
    >>> [round(float(schedule(t)), 4) for t in (0, 5, 24, 100)]
    [0.0, 0.1, 0.08, 0.0]
  """
  warmup, _ = _phases('warmup_linear_decay_schedule', peak_value,
                      total_steps, warmup_fraction)
  return optax.join_schedules(
      [_linear(0.0, peak_value, warmup),
       _linear(peak_value, 0.0, total_steps - warmup)], [warmup])


def warmup_cosine_schedule(
    peak_value: float, total_steps: int, warmup_fraction: float = 0.05
) -> optax.Schedule:
  r"""``optax.warmup_cosine_decay_schedule`` from 0, to 0 at ``total_steps``.

  Args:
    peak_value: the rate at the end of the warmup, > 0.
    total_steps: the run's length (optax's ``decay_steps``, which includes
      the warmup).
    warmup_fraction: the warmup's share of the run, in [0, 1].

  Returns:
    An optax schedule.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.warmup_cosine_schedule(0.1, 100)
    >>> [round(float(schedule(t)), 4) for t in (0, 5, 100)]
    [0.0, 0.1, 0.0]
  """
  warmup, _ = _phases('warmup_cosine_schedule', peak_value, total_steps,
                      warmup_fraction)
  return optax.warmup_cosine_decay_schedule(
      0.0, peak_value, warmup, total_steps, end_value=0.0)


def warmup_stable_decay_schedule(
    peak_value: float, total_steps: int, warmup_fraction: float = 0.05,
    decay_fraction: float = 0.2
) -> optax.Schedule:
  r"""Warmup-stable-decay (WSD): linear warmup, constant, linear decay to 0.

  The decay takes the last ``round(decay_fraction * T)`` steps;
  ``decay_fraction=0`` is a warmup followed by a constant rate.

  Args:
    peak_value: the stable rate, > 0.
    total_steps: T, the run's length.
    warmup_fraction: the warmup's share of the run, in [0, 1].
    decay_fraction: the decay's share of the run, in [0, 1].

  Returns:
    An optax schedule.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.warmup_stable_decay_schedule(0.1, 100)
    >>> [round(float(schedule(t)), 4) for t in (0, 5, 80, 90, 100)]
    [0.0, 0.1, 0.1, 0.05, 0.0]
  """
  warmup, decay = _phases('warmup_stable_decay_schedule', peak_value,
                          total_steps, warmup_fraction, decay_fraction)
  return optax.join_schedules(
      [_linear(0.0, peak_value, warmup), optax.constant_schedule(peak_value),
       _linear(peak_value, 0.0, total_steps - decay)], [warmup, decay])


def plrs_linear_decay_schedule(
    key: Any, peak_value: float, total_steps: int, min_ratio: float = 0.7,
    warmup_fraction: float = 0.05
) -> plrs.PLRSSchedule:
  r"""PLRS whose bounds follow linear decay: a random rate, annealed.

  .. math::
    \eta_t \sim U[r\,s(t), s(t)]

  where ``s`` is :func:`warmup_linear_decay_schedule` at ``peak_value`` and
  ``r = min_ratio`` (the paper's bounds, 0.07 and 0.1, have r = 0.7).

  Args:
    key: the PRNG key (or int seed) of :func:`plrs_jax.plrs_schedule`.
    peak_value: L_max at the end of the warmup, > 0.
    total_steps: the run's length.
    min_ratio: L_min / L_max at every step, in [0, 1].
    warmup_fraction: the warmup's share of the run, in [0, 1].

  Returns:
    A :class:`plrs_jax.PLRSSchedule`.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.plrs_linear_decay_schedule(0, 0.1, 100)
    >>> bool(0.035 <= schedule(52) <= 0.05), float(schedule(100))
    (True, 0.0)
  """
  _phases('plrs_linear_decay_schedule', peak_value, total_steps,
          warmup_fraction, min_ratio=min_ratio)
  high = warmup_linear_decay_schedule(peak_value, total_steps, warmup_fraction)
  return plrs.plrs_schedule(key, lambda count: min_ratio * high(count), high)


def plrs_wsd_schedule(
    key: Any, peak_value: float, total_steps: int, min_ratio: float = 0.7,
    warmup_fraction: float = 0.05, decay_fraction: float = 0.2
) -> optax.Schedule:
  r"""WSD whose stable phase is PLRS: warmup to ``peak_value``, rates drawn
  from ``[min_ratio * peak_value, peak_value]``, then WSD's linear decay from
  ``peak_value`` to 0 over the last ``decay_fraction`` of the run.

  Args:
    key: the PRNG key (or int seed) of :func:`plrs_jax.plrs_schedule`; the
      stable phase's step ``t`` draws at ``t - warmup``.
    peak_value: L_max, > 0.
    total_steps: the run's length.
    min_ratio: L_min / L_max, in [0, 1].
    warmup_fraction: the warmup's share of the run, in [0, 1].
    decay_fraction: the decay's share of the run, in [0, 1].

  Returns:
    An optax schedule.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.plrs_wsd_schedule(0, 0.1, 100)
    >>> bool(0.07 <= schedule(50) <= 0.1), round(float(schedule(90)), 4)
    (True, 0.05)
  """
  warmup, decay = _phases('plrs_wsd_schedule', peak_value, total_steps,
                          warmup_fraction, decay_fraction, min_ratio)
  return optax.join_schedules(
      [_linear(0.0, peak_value, warmup),
       plrs.plrs_schedule(key, min_ratio * peak_value, peak_value),
       _linear(peak_value, 0.0, total_steps - decay)], [warmup, decay])
