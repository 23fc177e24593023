"""PLRS: the probabilistic learning-rate schedule of arXiv 2407.07613."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from plrs_jax import _validation

ScalarOrSchedule = optax.ScalarOrSchedule


_FN = 'plrs_schedule'


def _static(value: Any) -> Any:
  """A concrete number as a Python float, which hashes and compares by value
  (the static fields of a schedule key jit's cache); anything else as is."""
  if value is None or callable(value) or not _validation.is_concrete(value):
    return value
  return float(value)


def interpolate(start: jax.typing.ArrayLike, end: jax.typing.ArrayLike,
                fraction: jax.typing.ArrayLike) -> jax.Array:
  """Returns ``start + fraction * (end - start)`` in float32, never outside.

  For a ``fraction`` in [0, 1] the exact value lies between ``start`` and
  ``end``, but the float32 result need not: rounding (and XLA's fusion of the
  multiply-add under ``jit``) can land one ulp past ``end``. Clipping to the
  closed interval between the two makes ``min(start, end) <= rate <=
  max(start, end)`` hold for every input, eager or jitted, in either order.

  Args:
    start: the value at ``fraction = 0``.
    end: the value at ``fraction = 1``.
    fraction: where to interpolate, in [0, 1].

  Returns:
    The interpolated value, float32.
  """
  start = jnp.asarray(start, jnp.float32)
  end = jnp.asarray(end, jnp.float32)
  value = start + jnp.asarray(fraction, jnp.float32) * (end - start)
  return jnp.clip(value, jnp.minimum(start, end), jnp.maximum(start, end))


def _bound_at(schedule: ScalarOrSchedule, name: str,
              count: jax.typing.ArrayLike) -> jax.Array:
  """A bound's float32 value at ``count``; NaN (traced) or an error if < 0."""
  value = jnp.asarray(_validation.as_schedule(schedule)(count), jnp.float32)
  if not callable(schedule):
    return value  # a float bound was checked once, when the schedule was built
  if _validation.is_concrete(value):
    bad = ~(jnp.isfinite(value) & (value >= 0))
    if bool(jnp.any(bad)):
      raise ValueError(
          f'{_FN}: the `{name}` schedule gave {value} at step {count}; a bound '
          'must be a finite number >= 0 at every step (a negative rate would '
          'ascend the loss).')
    return value
  # Traced: no error can be raised, so make the step loudly non-finite.
  return jnp.where(value >= 0, value, jnp.nan)


@dataclasses.dataclass(frozen=True, eq=False)
class PLRSSchedule:
  """A PLRS schedule: call it with a step count to get that step's rate.

  Built by :func:`plrs_schedule` (whose docstring gives the contract); an
  ordinary optax schedule (a callable ``count -> rate``) that also exposes the
  quantities of the paper's analysis. The constructor checks the bounds and
  step counts, so ``dataclasses.replace(schedule, hold_steps=0)`` raises like
  ``plrs_schedule`` does.

  It is a pytree: ``key`` is its one leaf, the other fields are static. A
  schedule can be passed to a jitted function, and schedules that differ only
  in their key share one compiled program.

  Attributes:
    key: the typed PRNG key the rates are drawn from.
    min_value: L_min, a float or a schedule.
    max_value: L_max, a float or a schedule.
    hold_steps: a fresh rate is drawn every ``hold_steps`` steps.
    warmup_steps: steps of linear warmup from ``min_value`` to ``max_value``
      before sampling starts.
    center: eta_c of the analysis, a float or a schedule; None for the
      midpoint of the bounds.
  """

  key: jax.Array
  min_value: ScalarOrSchedule
  max_value: ScalarOrSchedule
  hold_steps: int = 1
  warmup_steps: int = 0
  center: ScalarOrSchedule | None = None

  def __post_init__(self) -> None:
    # JAX rebuilds the schedule through this constructor with a tracer or a
    # placeholder as the key, so only the static fields are checked here.
    low = _validation.check_value(_FN, 'min_value', self.min_value,
                                  allow_schedule=True)
    high = _validation.check_value(_FN, 'max_value', self.max_value,
                                   allow_schedule=True)
    _validation.check_order(_FN, 'min_value', low, 'max_value', high)
    _validation.check_int(_FN, 'hold_steps', self.hold_steps, minimum=1)
    _validation.check_int(_FN, 'warmup_steps', self.warmup_steps, minimum=0)
    if self.center is not None:
      mid = _validation.check_value(_FN, 'center', self.center,
                                    allow_schedule=True)
      _validation.check_order(_FN, 'min_value', low, 'center', mid)
      _validation.check_order(_FN, 'center', mid, 'max_value', high)

  def __call__(self, count: jax.typing.ArrayLike) -> jax.Array:
    """Returns the float32 learning rate at step ``count``."""
    step = jnp.asarray(count).astype(jnp.int32)
    low = _bound_at(self.min_value, 'min_value', count)
    high = _bound_at(self.max_value, 'max_value', count)
    # Blocks of hold_steps start where sampling starts, at warmup_steps. The
    # draw is a pure function of (key, block): nothing random is stored, so
    # replicas, hosts and resumed runs all see the same rate. u is float32
    # whatever jax_enable_x64 says, so the flag changes no rate.
    block = jnp.maximum(step - self.warmup_steps, 0) // self.hold_steps
    u = jax.random.uniform(jax.random.fold_in(self.key, block), (), jnp.float32)
    rate = interpolate(low, high, u)
    if self.warmup_steps:
      ramp = interpolate(low, high,
                         step.astype(jnp.float32) / self.warmup_steps)
      rate = jnp.where(step < self.warmup_steps, ramp, rate)
    return rate

  def noise(self, count: jax.typing.ArrayLike) -> jax.Array:
    """Returns u_t = lr_t - eta_c, the zero-mean perturbation of the analysis.

    With the default (midpoint) center, ``noise(count)`` lies in
    ``[-(L_max - L_min) / 2, (L_max - L_min) / 2]`` and is uniform there once
    sampling has started.

    Args:
      count: the step.

    Returns:
      The rate at ``count`` minus the center at ``count``, float32.

    Example:
      >>> import plrs_jax
      >>> schedule = plrs_jax.plrs_schedule(0, min_value=0.07, max_value=0.1)
      >>> u = schedule.noise(3)
      >>> bool(-0.015 <= u <= 0.015)
      True
    """
    if self.center is None:
      low = _bound_at(self.min_value, 'min_value', count)
      high = _bound_at(self.max_value, 'max_value', count)
      center = (low + high) / 2
    else:
      center = jnp.asarray(_validation.as_schedule(self.center)(count),
                           jnp.float32)
    return self(count) - center


jax.tree_util.register_dataclass(
    PLRSSchedule, data_fields=['key'],
    meta_fields=['min_value', 'max_value', 'hold_steps', 'warmup_steps',
                 'center'])


def plrs_schedule(
    key: Any,
    min_value: ScalarOrSchedule,
    max_value: ScalarOrSchedule,
    *,
    hold_steps: int = 1,
    warmup_steps: int = 0,
    center: ScalarOrSchedule | None = None,
) -> PLRSSchedule:
  r"""Probabilistic learning-rate schedule (PLRS).

  At every step the learning rate is drawn uniformly from the closed interval
  ``[min_value, max_value]`` (the paper's ``[L_min, L_max]``):

  .. math::

    \eta_t = L_{min}(t) + u_t (L_{max}(t) - L_{min}(t)),\quad
    u_t = \mathrm{uniform}(\mathrm{fold\_in}(key, \lfloor (t - w) / k
    \rfloor))

  with ``k = hold_steps`` and ``w = warmup_steps``. ``u_t`` is a float32 in
  ``[0, 1)`` (a multiple of 2**-23) and the rate is float32, whether or not
  ``jax_enable_x64`` is set: the flag changes no rate. The bounds are rounded
  to float32 and the rate is clipped to the closed interval between them, so
  ``float32(min_value) <= rate <= float32(max_value)`` holds for every draw
  and every pair of bounds, eagerly and under ``jit``. The top is reached:
  under ``jit`` XLA fuses the multiply-add, and the largest ``u``,
  ``1 - 2**-23``, gives exactly ``float32(max_value)`` for bounds such as
  (0.07, 0.1), so the interval is closed, as in the paper.

  The draw is a pure function of ``(key, t)``: the same key gives the same
  rates eagerly, under ``jit``, ``vmap`` and ``pmap``, on every replica and
  host, and after a resume. Within one compiled program (a training step on
  every replica and host, a resumed run) the rates are bit-identical; programs
  compiled differently (an eager call against a jitted one) can differ in the
  last bit, where XLA fuses the multiply-add. ``hold_steps=1`` draws a new
  rate every step (the paper's CIFAR runs); ``hold_steps=steps_per_epoch``
  draws once per epoch (its ImageNet runs).

  For ``t < warmup_steps`` the rate rises linearly instead,
  ``L_min + (L_max - L_min) t / warmup_steps`` (the authors' transformer
  variant). Sampling starts at ``t = warmup_steps`` with a full block of
  ``hold_steps`` steps: the schedule after the warmup is the schedule without
  one, started ``warmup_steps`` later.

  Bounds given as schedules may cross or touch zero: at every step the rate
  lies between the two bound values of that step, whichever is larger. A
  bound that is negative or not finite at a step is an error: an eager call
  raises ``ValueError`` naming the bound and the step; a traced call (under
  ``jit`` or ``vmap``), which cannot raise, returns NaN, so the training step
  fails loudly instead of ascending the loss.

  The bounds are called ``min_value`` and ``max_value``: optax has no pair of
  lower and upper rates to borrow names from (its ``init_value``,
  ``peak_value`` and ``end_value`` are points in time), and the names say
  which bound is which.

  The paper writes the rate as ``eta_c + u`` with ``u`` uniform on
  ``[L_min - eta_c, L_max - eta_c]``, so that SGD-PLRS is SGD at the center
  ``eta_c`` plus zero-mean multiplicative noise. ``center`` is that eta_c; it
  does not change the rates, and :meth:`PLRSSchedule.noise` returns ``u_t``.

  Args:
    key: a typed key (``jax.random.key(seed)``), a legacy uint32 key
      (``jax.random.PRNGKey(seed)``) or an int seed in [0, 2**32 - 1] (the
      seeds whose key is the same with and without ``jax_enable_x64``).
    min_value: L_min, a finite float >= 0 or an optax schedule (to anneal
      it).
    max_value: L_max, a finite float >= ``min_value`` or an optax schedule.
      ``min_value == max_value`` gives a constant rate.
    hold_steps: draw a new rate every ``hold_steps`` steps, an int in
      [1, 2**31 - 1] (steps are int32).
    warmup_steps: steps of linear warmup before sampling, an int in
      [0, 2**31 - 1].
    center: eta_c for the analysis; None (the default) for the midpoint of
      the bounds. With float bounds it must lie in ``[min_value, max_value]``.

  Returns:
    A :class:`PLRSSchedule`, usable wherever optax takes a schedule.

  Raises:
    TypeError: an argument has the wrong type.
    ValueError: an argument is out of range, or ``min_value > max_value``.

  Example:
    >>> import jax, optax, plrs_jax
    >>> schedule = plrs_jax.plrs_schedule(
    ...     jax.random.key(0), min_value=0.07, max_value=0.1)
    >>> rates = jax.vmap(schedule)(jax.numpy.arange(1000))
    >>> bool(rates.min() >= 0.07 and rates.max() <= 0.1), rates.dtype
    (True, dtype('float32'))
    >>> bool(jax.numpy.isclose(schedule(7), rates[7], rtol=1e-6))
    True
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)

  References:
    Devapriya, Tholeti, Suresh and Kalyani, `Probabilistic learning rate
    scheduler with provable convergence <https://arxiv.org/abs/2407.07613>`_,
    2024.
  """
  return PLRSSchedule(
      key=_validation.canonicalize_key(_FN, key),
      min_value=_static(min_value),
      max_value=_static(max_value),
      hold_steps=hold_steps,
      warmup_steps=warmup_steps,
      center=_static(center),
  )
