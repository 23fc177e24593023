"""The schedules practitioners pick today, and PLRS inside their envelopes.

Linear decay with a linear warmup (the default of Google's tuning playbook and
of AlgoPerf's SGD baseline), warmup + cosine decay, and warmup-stable-decay
(WSD) with the cooldown shapes of Hagele et al.: linear, cosine and 1-sqrt. The
two PLRS variants draw their rate with :func:`plrs_jax.plrs_schedule` between
bounds that follow those shapes.

Every schedule here is one envelope over a run of ``T = total_steps`` steps,
counted from 0 (the run trains at steps 0 to T - 1): a linear warmup from 0 to
the peak P over W steps, the peak, then a decay over the last D steps, from
``S = T - D`` on, to the end value E:

- warmup: ``P t / W`` for ``t < W``; the peak from ``t = W`` on.
- decay: with the cooldown's progress ``p = (t - S) / D``, ``p = 0`` at
  ``t = S``, the last step at the peak, and ``p = 1`` at ``t = T``, the first
  step past the run, which gets exactly E (the run's last step, T - 1, has
  ``p = 1 - 1/D``). The rate is ``E + (P - E) f(p)`` with ``f`` one of

  - ``'linear'``: ``1 - p``;
  - ``'cosine'``: ``(1 + cos(pi p)) / 2``;
  - ``'1-sqrt'``: ``1 - sqrt(p)``.

  From ``t = T`` on the rate stays E, eagerly and under ``jit``.
- a decay of zero length (``D = 0``) leaves the peak from W on, at every step,
  past the run's end too: a warmup and a constant rate (schedule-free SGD's
  schedule), whatever ``end_value``.

Durations are given in steps (``warmup_steps``, ``decay_steps``) or as
fractions of the run (``warmup_fraction``, ``decay_fraction``, so that one
config serves every run length), one of each pair; both is a ``ValueError``
naming the two. Fractions round the phases' boundaries to whole steps (Python's
``round``, half to even), not their lengths: the warmup ends at
``round(warmup_fraction * T)`` and the decay starts at
``round(T - decay_fraction * T)``. Rounding is monotone, so phases that fit in
the run never overlap: ``T = 7`` with both fractions 0.5 has a warmup of 4
steps and a decay of 3. Phases that do not fit are a ``ValueError`` naming
them.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from plrs_jax import plrs
from plrs_jax._validation import check_int
from plrs_jax._validation import check_order
from plrs_jax._validation import check_value

__all__ = (
    'plrs_linear_decay_schedule',
    'plrs_wsd_schedule',
    'warmup_cosine_schedule',
    'warmup_linear_decay_schedule',
    'warmup_stable_decay_schedule',
)

# The share of (peak - end) left after `done` of a decay's `steps` steps.
# Cosine keeps optax's cosine_decay_schedule arithmetic, pi * done / steps.
_DECAY_SHAPES: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    'linear': lambda done, steps: 1 - done / steps,
    'cosine': lambda done, steps: 0.5 * (1 + jnp.cos(jnp.pi * done / steps)),
    '1-sqrt': lambda done, steps: 1 - jnp.sqrt(done / steps),
}

_WARMUP_FRACTION = 0.05  # AlgoPerf's SGD baseline and the tuning playbook.
_DECAY_FRACTION = 0.2  # Hagele et al.'s cooldowns take 10-20% of the run.


def _duration(fn: str, total_steps: int, fraction: float | None,
              steps: int | None, name: str, default: float
              ) -> tuple[float, float | None, str]:
  """A phase's length in steps (a real number), its fraction of the run (None
  when given in steps) and the argument it came from, for messages."""
  if fraction is not None and steps is not None:
    raise ValueError(
        f'{fn}: give the {name} as `{name}_fraction` or as `{name}_steps`, '
        f'not both: got {name}_fraction={fraction} and {name}_steps={steps}.')
  if steps is not None:
    steps = check_int(fn, f'{name}_steps', steps, minimum=0)
    return steps, None, f'{name}_steps={steps}'
  if fraction is None:
    fraction = default
  share = _share(fn, f'{name}_fraction', fraction)
  return share * total_steps, share, f'{name}_fraction={fraction}'


def _share(fn: str, name: str, value: Any) -> float:
  """Checks a fraction: a number in [0, 1], known when the schedule is
  built (durations are rounded to whole steps then)."""
  if not 0 <= value <= 1:  # NaN fails too
    raise ValueError(f'{fn}: `{name}` must be a number in [0, 1], got '
                     f'{value!r}.')
  return float(value)


def _phases(fn: str, peak_value: float, total_steps: int,
            warmup_fraction: float | None, warmup_steps: int | None,
            end_value: float, decay_fraction: float | None = None,
            decay_steps: int | None = None, *, rest: bool = False,
            decay_shape: str = 'linear', min_ratio: float = 1.0
            ) -> tuple[int, int]:
  """Checks the arguments; returns (warmup steps, first step of the decay).

  With `rest` the decay takes every step after the warmup.
  """
  peak = check_value(fn, 'peak_value', peak_value, positive=True)
  check_order(fn, 'end_value', check_value(fn, 'end_value', end_value),
              'peak_value', peak)
  _share(fn, 'min_ratio', min_ratio)
  if decay_shape not in _DECAY_SHAPES:
    raise ValueError(
        f'{fn}: `decay_shape` must be one of {", ".join(_DECAY_SHAPES)}, got '
        f'{decay_shape!r}.')
  check_int(fn, 'total_steps', total_steps, minimum=1)
  warmup, warmup_share, warmup_arg = _duration(
      fn, total_steps, warmup_fraction, warmup_steps, 'warmup',
      _WARMUP_FRACTION)
  if rest:
    if warmup > total_steps:
      raise ValueError(f'{fn}: the warmup must fit in the run: {warmup_arg} '
                       f'> {total_steps=}.')
    return round(warmup), round(warmup)
  decay, decay_share, decay_arg = _duration(
      fn, total_steps, decay_fraction, decay_steps, 'decay', _DECAY_FRACTION)
  if warmup_share is not None and decay_share is not None:
    # Compared as given: fractions that add up to 1 can have products that
    # add up to a rounding error more than the run.
    overlap = warmup_share + decay_share > 1
  else:
    overlap = warmup + decay > total_steps
  if overlap:
    raise ValueError(
        f'{fn}: the warmup and the decay must fit in the run: {warmup_arg} '
        f'and {decay_arg} over {total_steps=}.')
  warmup_end = round(warmup)
  return warmup_end, max(round(total_steps - decay), warmup_end)


def _envelope(peak_value: float, end_value: float, total_steps: int,
              warmup_steps: int, decay_start: int, decay_shape: str,
              stable: optax.Schedule | None = None
              ) -> Callable[[jax.typing.ArrayLike], jax.Array]:
  """The warmup, `stable` (the peak by default) from `warmup_steps` on, then
  the decay from `decay_start` to `total_steps` (none if they are equal)."""
  # A warmup of 0 steps is never used (the next phase starts at step 0); one
  # of 1 step keeps optax from logging that it is constant.
  phases = [optax.linear_schedule(0.0, peak_value, max(warmup_steps, 1)),
            optax.constant_schedule(peak_value) if stable is None else stable]
  decay_steps = total_steps - decay_start
  shape = _DECAY_SHAPES[decay_shape]

  def decay(count: jax.typing.ArrayLike) -> jax.Array:
    left = shape(jnp.clip(count, 0, decay_steps), decay_steps)
    # Exactly the peak at p = 0 and the end at p = 1, never outside the two.
    return jnp.clip(left * peak_value + (1 - left) * end_value, end_value,
                    peak_value)

  if decay_steps:
    joined = optax.join_schedules([*phases, decay],
                                  [warmup_steps, decay_start])
  else:
    joined = optax.join_schedules(phases, [warmup_steps])

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    if not decay_steps:
      return jnp.asarray(joined(count))
    # Under jit XLA's division can leave p a few ulps short of 1 at the end.
    return jnp.where(jnp.asarray(count) >= total_steps, end_value,
                     joined(count))

  return schedule


def warmup_linear_decay_schedule(
    peak_value: float, total_steps: int, warmup_fraction: float | None = None,
    *, warmup_steps: int | None = None, end_value: float = 0.0
) -> optax.Schedule:
  r"""Linear warmup from 0 to ``peak_value``, then linear decay to the end.

  .. math::
    \eta_t = \begin{cases} P t / W & t < W \\
      E + (P - E) (T - t) / (T - W) & W \le t < T \\
      E & t \ge T \end{cases}

  AlgoPerf's SGD baseline and the tuning playbook's default (5% warmup, to 0).
  Steps and rounding as in the module's docstring; ``W = T`` (a warmup of the
  whole run) leaves ``peak_value`` from ``T`` on.

  Args:
    peak_value: P, the rate at the end of the warmup, > 0.
    total_steps: T, the run's length; the rate is ``end_value`` from step T on.
    warmup_fraction: the warmup's share of the run, in [0, 1]; 0.05 when
      neither it nor ``warmup_steps`` is given.
    warmup_steps: W, the warmup in steps, instead of ``warmup_fraction``.
    end_value: E, the rate at step T, in [0, ``peak_value``].

  Returns:
    An optax schedule.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.warmup_linear_decay_schedule(0.1, 100)
    >>> [round(float(schedule(t)), 4) for t in (0, 5, 24, 99, 100)]
    [0.0, 0.1, 0.08, 0.0011, 0.0]
  """
  warmup, _ = _phases('warmup_linear_decay_schedule', peak_value, total_steps,
                      warmup_fraction, warmup_steps, end_value, rest=True)
  return _envelope(peak_value, end_value, total_steps, warmup, warmup,
                   'linear')


def warmup_cosine_schedule(
    peak_value: float, total_steps: int, warmup_fraction: float | None = None,
    *, warmup_steps: int | None = None, end_value: float = 0.0
) -> optax.Schedule:
  r"""Linear warmup from 0 to ``peak_value``, then cosine decay to the end.

  As ``optax.warmup_cosine_decay_schedule(0.0, peak_value, W, total_steps,
  end_value)`` (its ``decay_steps`` includes the warmup), whose rates it
  gives bit for bit at ``end_value=0``: the rate at ``W <= t < T`` is
  ``E + (P - E) (1 + cos(pi (t - W) / (T - W))) / 2``.
  Steps and rounding as in the module's docstring; ``W = T`` (a warmup of the
  whole run) leaves ``peak_value`` from ``T`` on.

  Args:
    peak_value: P, the rate at the end of the warmup, > 0.
    total_steps: T, the run's length; the rate is ``end_value`` from step T on.
    warmup_fraction: the warmup's share of the run, in [0, 1]; 0.05 when
      neither it nor ``warmup_steps`` is given.
    warmup_steps: W, the warmup in steps, instead of ``warmup_fraction``.
    end_value: E, the rate at step T, in [0, ``peak_value``].

  Returns:
    An optax schedule.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.warmup_cosine_schedule(0.1, 100, end_value=0.01)
    >>> [round(float(schedule(t)), 4) for t in (0, 5, 100)]
    [0.0, 0.1, 0.01]
  """
  warmup, _ = _phases('warmup_cosine_schedule', peak_value, total_steps,
                      warmup_fraction, warmup_steps, end_value, rest=True)
  return _envelope(peak_value, end_value, total_steps, warmup, warmup,
                   'cosine')


def warmup_stable_decay_schedule(
    peak_value: float, total_steps: int, warmup_fraction: float | None = None,
    decay_fraction: float | None = None, *, warmup_steps: int | None = None,
    decay_steps: int | None = None, end_value: float = 0.0,
    decay_shape: str = 'linear', stable_value: float | None = None
) -> optax.Schedule:
  r"""Warmup-stable-decay (WSD): linear warmup, constant, then a cooldown.

  .. math::
    \eta_t = \begin{cases} P t / W & t < W \\ V & W \le t < S \\
      E + (P - E) f((t - S) / D) & S \le t < T \\ E & t \ge T \end{cases}

  with ``S = T - D``, the stable rate ``V = P`` unless ``stable_value`` is
  given, and the cooldown's shape ``f`` (``decay_shape``):
  ``'linear'`` ``1 - p``, ``'cosine'`` ``(1 + cos(pi p)) / 2`` or ``'1-sqrt'``
  ``1 - sqrt(p)``, the best of Hagele et al.'s. Steps and rounding as in the
  module's docstring; a decay of zero length (``decay_fraction=0`` or
  ``decay_steps=0``) is a warmup followed by ``peak_value`` at every step.

  Args:
    peak_value: P, the stable rate, > 0.
    total_steps: T, the run's length; the rate is ``end_value`` from step T on.
    warmup_fraction: the warmup's share of the run, in [0, 1]; 0.05 when
      neither it nor ``warmup_steps`` is given.
    decay_fraction: the cooldown's share of the run, in [0, 1]; 0.2 when
      neither it nor ``decay_steps`` is given.
    warmup_steps: W, the warmup in steps, instead of ``warmup_fraction``.
    decay_steps: D, the cooldown in steps, instead of ``decay_fraction``.
    end_value: E, the rate at step T, in [0, ``peak_value``].
    decay_shape: the cooldown's shape, ``'linear'``, ``'cosine'`` or
      ``'1-sqrt'``.
    stable_value: V, the rate from the warmup's end to the cooldown's start
      (excluded), in [0, ``peak_value``]; the warmup still rises to, and the
      cooldown falls from, ``peak_value``. With ``0.85 * peak_value`` this is
      the mean of :func:`plrs_wsd_schedule` at ``min_ratio=0.7``, step by
      step.

  Returns:
    An optax schedule.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.warmup_stable_decay_schedule(0.1, 100)
    >>> [round(float(schedule(t)), 4) for t in (0, 5, 80, 90, 100)]
    [0.0, 0.1, 0.1, 0.05, 0.0]
    >>> schedule = plrs_jax.warmup_stable_decay_schedule(
    ...     0.1, 100, decay_steps=10, decay_shape='1-sqrt', end_value=0.01)
    >>> [round(float(schedule(t)), 4) for t in (90, 91, 99, 100)]
    [0.1, 0.0715, 0.0146, 0.01]
    >>> schedule = plrs_jax.warmup_stable_decay_schedule(
    ...     0.1, 100, stable_value=0.085)
    >>> [round(float(schedule(t)), 4) for t in (5, 79, 80, 90)]
    [0.085, 0.085, 0.1, 0.05]

  References:
    Hagele et al., `Scaling laws and compute-optimal training beyond fixed
    training durations <https://arxiv.org/abs/2405.18392>`_, 2024.
  """
  warmup, decay = _phases('warmup_stable_decay_schedule', peak_value,
                          total_steps, warmup_fraction, warmup_steps,
                          end_value, decay_fraction, decay_steps,
                          decay_shape=decay_shape)
  stable = None
  if stable_value is not None:
    fn = 'warmup_stable_decay_schedule'
    check_order(fn, 'stable_value', check_value(fn, 'stable_value',
                                                stable_value),
                'peak_value', check_value(fn, 'peak_value', peak_value))
    stable = optax.constant_schedule(stable_value)
  return _envelope(peak_value, end_value, total_steps, warmup, decay,
                   decay_shape, stable=stable)


def plrs_linear_decay_schedule(
    key: Any, peak_value: float, total_steps: int, min_ratio: float = 0.7,
    warmup_fraction: float | None = None, *, warmup_steps: int | None = None,
    end_value: float = 0.0
) -> plrs.PLRSSchedule:
  r"""PLRS whose bounds follow linear decay: a random rate, annealed.

  .. math::
    \eta_t \sim U[r\,s(t), s(t)]

  where ``s`` is :func:`warmup_linear_decay_schedule` of the same arguments
  and ``r = min_ratio`` (the paper's bounds, 0.07 and 0.1, have r = 0.7).

  Args:
    key: the PRNG key (or int seed) of :func:`plrs_jax.plrs_schedule`.
    peak_value: L_max at the end of the warmup, > 0.
    total_steps: the run's length.
    min_ratio: L_min / L_max at every step, in [0, 1].
    warmup_fraction: the warmup's share of the run, in [0, 1]; 0.05 when
      neither it nor ``warmup_steps`` is given.
    warmup_steps: the warmup in steps, instead of ``warmup_fraction``.
    end_value: L_max from step ``total_steps`` on, in [0, ``peak_value``].

  Returns:
    A :class:`plrs_jax.PLRSSchedule`.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.plrs_linear_decay_schedule(0, 0.1, 100)
    >>> bool(0.035 <= schedule(52) <= 0.05), float(schedule(100))
    (True, 0.0)
  """
  warmup, _ = _phases('plrs_linear_decay_schedule', peak_value, total_steps,
                      warmup_fraction, warmup_steps, end_value, rest=True,
                      min_ratio=min_ratio)
  high = _envelope(peak_value, end_value, total_steps, warmup, warmup,
                   'linear')
  return plrs.plrs_schedule(key, lambda count: min_ratio * high(count), high)


def plrs_wsd_schedule(
    key: Any, peak_value: float, total_steps: int, min_ratio: float = 0.7,
    warmup_fraction: float | None = None, decay_fraction: float | None = None,
    *, warmup_steps: int | None = None, decay_steps: int | None = None,
    end_value: float = 0.0, decay_shape: str = 'linear'
) -> optax.Schedule:
  r"""WSD whose stable phase is PLRS.

  :func:`warmup_stable_decay_schedule` of the same arguments, except that
  from the warmup's end ``W`` to the decay's start ``S`` (excluded) the rate
  is drawn from ``[min_ratio * peak_value, peak_value]``; the cooldown starts
  from ``peak_value`` at ``S``. Its mean at every step is the WSD schedule at
  ``stable_value=(1 + min_ratio) / 2 * peak_value``.

  Args:
    key: the PRNG key (or int seed) of :func:`plrs_jax.plrs_schedule`; the
      stable phase's step ``t`` draws at ``t - W``.
    peak_value: L_max, > 0.
    total_steps: T, the run's length; the rate is ``end_value`` from step T on.
    min_ratio: L_min / L_max, in [0, 1].
    warmup_fraction: the warmup's share of the run, in [0, 1]; 0.05 when
      neither it nor ``warmup_steps`` is given.
    decay_fraction: the cooldown's share of the run, in [0, 1]; 0.2 when
      neither it nor ``decay_steps`` is given.
    warmup_steps: the warmup in steps, instead of ``warmup_fraction``.
    decay_steps: the cooldown in steps, instead of ``decay_fraction``.
    end_value: the rate at step T, in [0, ``peak_value``].
    decay_shape: the cooldown's shape, ``'linear'``, ``'cosine'`` or
      ``'1-sqrt'``.

  Returns:
    An optax schedule.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.plrs_wsd_schedule(0, 0.1, 100)
    >>> bool(0.07 <= schedule(50) <= 0.1), round(float(schedule(90)), 4)
    (True, 0.05)
    >>> schedule = plrs_jax.plrs_wsd_schedule(0, 0.1, 100, decay_steps=10,
    ...                                       decay_shape='cosine')
    >>> [round(float(schedule(t)), 4) for t in (90, 95, 100)]
    [0.1, 0.05, 0.0]
  """
  warmup, decay = _phases('plrs_wsd_schedule', peak_value, total_steps,
                          warmup_fraction, warmup_steps, end_value,
                          decay_fraction, decay_steps, decay_shape=decay_shape,
                          min_ratio=min_ratio)
  return _envelope(
      peak_value, end_value, total_steps, warmup, decay, decay_shape,
      stable=plrs.plrs_schedule(key, min_ratio * peak_value, peak_value))
