"""PLRS: the probabilistic learning-rate schedule of arXiv 2407.07613."""

from collections.abc import Callable
import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp

from plrs_jax import _validation

ScalarOrSchedule = float | jax.Array | Callable[[chex.Numeric], chex.Numeric]


@dataclasses.dataclass(frozen=True, eq=False)
class PLRSSchedule:
  """A PLRS schedule: call it with a step count to get that step's rate.

  Built by :func:`plrs_schedule`, which validates the arguments; it is an
  ordinary optax schedule (a callable ``count -> rate``) that also exposes the
  quantities of the paper's analysis.

  Attributes:
    key: the typed PRNG key the rates are drawn from.
    min_value: L_min, a float or a schedule.
    max_value: L_max, a float or a schedule.
    hold_steps: a fresh rate is drawn every ``hold_steps`` steps.
    warmup_steps: steps of linear warmup from ``min_value`` to ``max_value``
      before sampling starts.
    center: eta_c of the analysis, a float (with float bounds) or a schedule.
  """

  key: jax.Array
  min_value: ScalarOrSchedule
  max_value: ScalarOrSchedule
  hold_steps: int
  warmup_steps: int
  center: ScalarOrSchedule

  def __call__(self, count: chex.Numeric) -> jax.Array:
    """Returns the learning rate at step ``count``."""
    step = jnp.asarray(count).astype(jnp.int32)
    low = _validation.as_schedule(self.min_value)(count)
    high = _validation.as_schedule(self.max_value)(count)
    # The draw is a pure function of (key, block): nothing random is stored, so
    # replicas, hosts and resumed runs all see the same rate.
    block_key = jax.random.fold_in(self.key, step // self.hold_steps)
    u = jax.random.uniform(block_key, dtype=jnp.result_type(float))
    rate = low + u * (high - low)
    if self.warmup_steps:
      ramp = low + (high - low) * (step / self.warmup_steps)
      rate = jnp.where(step < self.warmup_steps, ramp, rate)
    return rate

  def noise(self, count: chex.Numeric) -> jax.Array:
    """Returns u_t = lr_t - eta_c, the zero-mean perturbation of the analysis.

    With the default (midpoint) center, ``noise(count)`` is uniform on
    ``[-(L_max - L_min) / 2, (L_max - L_min) / 2)`` once sampling has started.

    Args:
      count: the step.

    Returns:
      The rate at ``count`` minus the center at ``count``.

    Example:
      >>> import plrs_jax
      >>> schedule = plrs_jax.plrs_schedule(0, min_value=0.07, max_value=0.1)
      >>> u = schedule.noise(3)
      >>> bool(-0.015 <= u < 0.015)
      True
    """
    return self(count) - _validation.as_schedule(self.center)(count)


def _midpoint(low: ScalarOrSchedule, high: ScalarOrSchedule) -> ScalarOrSchedule:
  if not callable(low) and not callable(high):
    return (low + high) / 2
  low_fn = _validation.as_schedule(low)
  high_fn = _validation.as_schedule(high)
  return lambda count: (low_fn(count) + high_fn(count)) / 2


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

  At every step the learning rate is drawn uniformly from
  ``[min_value, max_value)``:

  .. math::

    \eta_t = L_{min}(t) + u_t (L_{max}(t) - L_{min}(t)),\quad
    u_t = \mathrm{uniform}(\mathrm{fold\_in}(key, \lfloor t / k \rfloor))

  with ``k = hold_steps``. The draw is a pure function of ``(key, t)``: the
  same key gives the same rates eagerly, under ``jit``, ``vmap`` and ``pmap``,
  on every replica and host, and after a resume. ``hold_steps=1`` draws a new
  rate every step (the paper's CIFAR runs); ``hold_steps=steps_per_epoch``
  draws once per epoch (its ImageNet runs).

  Within one compiled program (a training step on every replica and host, a
  resumed run) the rates are bit-identical. Programs compiled differently (an
  eager call against a jitted one) can differ in the last bit, because XLA may
  fuse ``low + u * (high - low)`` into one multiply-add.

  For ``t < warmup_steps`` the rate rises linearly instead,
  ``L_min + (L_max - L_min) t / warmup_steps`` (the authors' transformer
  variant); sampling starts at ``t = warmup_steps``.

  The paper writes the rate as ``eta_c + u`` with ``u`` uniform on
  ``[L_min - eta_c, L_max - eta_c]``, so that SGD-PLRS is SGD at the center
  ``eta_c`` plus zero-mean multiplicative noise. ``center`` is that eta_c; it
  does not change the rates, and :meth:`PLRSSchedule.noise` returns ``u_t``.

  Args:
    key: a typed key (``jax.random.key(seed)``), a legacy uint32 key
      (``jax.random.PRNGKey(seed)``) or an int seed.
    min_value: L_min, a finite float >= 0 or an optax schedule (to anneal it).
    max_value: L_max, a finite float >= ``min_value`` or an optax schedule.
      ``min_value == max_value`` gives a constant rate.
    hold_steps: draw a new rate every ``hold_steps`` steps (an int >= 1).
    warmup_steps: steps of linear warmup before sampling (an int >= 0).
    center: eta_c for the analysis; defaults to the midpoint of the bounds.
      With float bounds it must lie in ``[min_value, max_value]``.

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
    >>> bool(rates.min() >= 0.07 and rates.max() < 0.1)
    True
    >>> bool(jax.numpy.isclose(schedule(7), rates[7], rtol=1e-6))
    True
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)

  References:
    Devapriya, Tholeti, Suresh and Kalyani, `Probabilistic learning rate
    scheduler with provable convergence <https://arxiv.org/abs/2407.07613>`_,
    2024.
  """
  fn = 'plrs_schedule'
  key = _validation.canonicalize_key(fn, key)
  low = _validation.check_value(fn, 'min_value', min_value, allow_schedule=True)
  high = _validation.check_value(fn, 'max_value', max_value, allow_schedule=True)
  _validation.check_order(fn, 'min_value', low, 'max_value', high)
  hold_steps = _validation.check_int(fn, 'hold_steps', hold_steps, minimum=1)
  warmup_steps = _validation.check_int(
      fn, 'warmup_steps', warmup_steps, minimum=0)
  if center is None:
    center = _midpoint(min_value, max_value)
  else:
    mid = _validation.check_value(fn, 'center', center, allow_schedule=True)
    if mid is not None and low is not None and high is not None and not (
        low <= mid <= high):
      raise ValueError(
          f'{fn}: `center` must lie in [min_value, max_value] = [{low}, {high}]'
          f', got {center!r}. Leave it unset for the midpoint.'
      )
  return PLRSSchedule(
      key=key,
      min_value=min_value,
      max_value=max_value,
      hold_steps=hold_steps,
      warmup_steps=warmup_steps,
      center=center,
  )
