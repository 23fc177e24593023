"""Eager argument checks shared by every schedule factory.

Schedules are factories that validate their arguments once, on the host, and
return a closure written in jnp (optax's convention). The checks here only look
at concrete values: a traced argument (a factory called under `jax.vmap` or
`jax.jit`) is let through, since its value is not known yet.
"""

import math
import numbers
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
import optax


def is_concrete(value: Any) -> bool:
  """Whether `value` can be inspected on the host (not a tracer)."""
  return not isinstance(value, jax.core.Tracer)


def _as_real_scalar(fn: str, name: str, value: Any,
                    allowed: str) -> float | None:
  """Returns `value` as a Python float, or None when it is traced."""
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(
        f'{fn}: `{name}` must be {allowed}, got the bool {value!r}.')
  if isinstance(value, numbers.Real):
    return float(value)
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    if jnp.shape(value) != ():
      raise ValueError(
          f'{fn}: `{name}` must be a scalar ({allowed}), got an array of shape '
          f'{jnp.shape(value)}.'
      )
    if not (jnp.issubdtype(value.dtype, jnp.floating)
            or jnp.issubdtype(value.dtype, jnp.integer)):
      raise TypeError(
          f'{fn}: `{name}` must be {allowed}, got an array of dtype '
          f'{value.dtype}.'
      )
    if not is_concrete(value):
      return None
    return float(value)
  raise TypeError(
      f'{fn}: `{name}` must be {allowed}, got {value!r} of type '
      f'{type(value).__name__}.'
  )


def check_value(
    fn: str,
    name: str,
    value: Any,
    *,
    allow_schedule: bool = False,
    positive: bool = False,
) -> float | None:
  """Checks a schedule value: a finite number >= 0 (> 0 with `positive`).

  Args:
    fn: name of the calling factory, used in the message.
    name: name of the argument, used in the message.
    value: the argument.
    allow_schedule: whether a callable (an optax schedule) is also accepted.
    positive: require a value > 0 rather than >= 0.

  Returns:
    The value as a Python float; None when it is a schedule or traced.

  Raises:
    TypeError: `value` is not a number (or a schedule, where allowed).
    ValueError: `value` is not finite, or out of range.
  """
  bound = '> 0' if positive else '>= 0'
  allowed = f'a finite number {bound}'
  if allow_schedule:
    if callable(value):
      return None
    allowed += ' or an optax schedule (a callable count -> value)'
  number = _as_real_scalar(fn, name, value, allowed)
  if number is None:
    return None
  if not math.isfinite(number) or number < 0 or (positive and number == 0):
    raise ValueError(f'{fn}: `{name}` must be {allowed}, got {value!r}.')
  return number


def check_int(fn: str, name: str, value: Any, *, minimum: int) -> int:
  """Checks that `value` is a Python or numpy integer >= `minimum`."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, numbers.Integral
  ):
    raise TypeError(
        f'{fn}: `{name}` must be an int >= {minimum}, got {value!r} of type '
        f'{type(value).__name__}.'
    )
  if value < minimum:
    raise ValueError(
        f'{fn}: `{name}` must be an int >= {minimum}, got {value}.')
  return int(value)


# optax counts steps in int32: no step count, period or boundary can exceed it.
MAX_STEP = 2**31 - 1


def check_steps(fn: str, name: str, value: Any, *, minimum: int) -> int:
  """Checks that `value` is an int in [minimum, 2**31 - 1] (an int32 step)."""
  value = check_int(fn, name, value, minimum=minimum)
  if value > MAX_STEP:
    raise ValueError(
        f'{fn}: `{name}` must be an int in [{minimum}, 2**31 - 1] (step counts '
        f'are int32), got {value}.'
    )
  return value


def check_order(fn: str, low_name: str, low: float | None, high_name: str,
                high: float | None) -> None:
  """Checks `low <= high` where both are known."""
  if low is not None and high is not None and low > high:
    raise ValueError(
        f'{fn}: `{low_name}` must be <= `{high_name}`, got {low_name}={low} '
        f'and {high_name}={high}. Swap them, or set them equal for a constant '
        'rate.'
    )


# Seeds that jax.random.key maps to the same key whether or not jax_enable_x64
# is set: with x64 off a seed is taken modulo 2**32 (2**32 aliases 0), with it
# on negative seeds and seeds >= 2**32 fill the key's high word.
MAX_SEED = 2**32 - 1


def canonicalize_key(fn: str, key: Any) -> jax.Array:
  """Returns a typed PRNG key from a typed key, a legacy uint32 key or a seed.

  Args:
    fn: name of the calling factory, used in the message.
    key: a typed key from `jax.random.key`, a legacy key from
      `jax.random.PRNGKey` (uint32 array of shape (2,)), or an int seed in
      [0, 2**32 - 1] (the seeds whose key does not depend on jax_enable_x64).

  Returns:
    A typed key of shape ().
  """
  allowed = (
      'a typed key from jax.random.key(seed), a legacy uint32 key from '
      'jax.random.PRNGKey(seed), or an int seed in [0, 2**32 - 1]'
  )
  if isinstance(key, (bool, np.bool_)):
    raise TypeError(f'{fn}: `key` must be {allowed}, got the bool {key!r}.')
  if isinstance(key, numbers.Integral):
    return jax.random.key(_check_seed(fn, int(key), allowed))
  if isinstance(key, (jax.Array, np.ndarray)):
    dtype = key.dtype
    # Key dtypes exist only on jax.Arrays, never on numpy arrays.
    if (isinstance(key, jax.Array)
        and jnp.issubdtype(dtype, jax.dtypes.prng_key)):
      if key.shape != ():
        raise ValueError(
            f'{fn}: `key` must be a single key, got a batch of keys of shape '
            f'{key.shape}. To run many seeds, build the schedule inside '
            'jax.vmap over the keys.'
        )
      return key
    if dtype == jnp.uint32 and key.shape == (2,):
      return jax.random.wrap_key_data(jnp.asarray(key))
    if jnp.issubdtype(dtype, jnp.integer) and key.shape == ():
      if is_concrete(key):
        # Range-checked as a Python int, then converted without wrapping.
        return jax.random.key(_check_seed(fn, int(key), allowed))
      return jax.random.key(key)
    raise TypeError(
        f'{fn}: `key` must be {allowed}, got an array of dtype {dtype} and '
        f'shape {key.shape}.'
    )
  raise TypeError(
      f'{fn}: `key` must be {allowed}, got {key!r} of type '
      f'{type(key).__name__}.'
  )


def _check_seed(fn: str, seed: int, allowed: str) -> int:
  if not 0 <= seed <= MAX_SEED:
    raise ValueError(
        f'{fn}: `key` must be {allowed}, got the seed {seed}: outside that '
        'range jax.random.key wraps it (2**32 gives the key of seed 0) or '
        'gives another key when jax_enable_x64 is set. Fold a large id into '
        'a key instead: jax.random.fold_in(jax.random.key(0), id % 2**32).'
    )
  return seed


def as_schedule(value: optax.ScalarOrSchedule) -> optax.Schedule:
  """Returns `value` as a schedule: itself if callable, else a constant."""
  if callable(value):
    return value
  return lambda count: jnp.asarray(value, dtype=jnp.result_type(float))
