"""Eager argument checks shared by every schedule factory.

Schedules are factories that validate their arguments once, on the host, and
return a closure written in jnp (optax's convention). The checks catch what
would otherwise be silent (a negative rate, inverted bounds, a batch of keys
where one is expected); a wrong type is left to Python and JAX, which reject
it anyway. A traced argument (a factory called under `jax.vmap` or `jax.jit`)
is let through, since its value is not known yet.
"""

import numbers
import operator
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
import optax


def is_concrete(value: Any) -> bool:
  """Whether `value` can be inspected on the host (not a tracer)."""
  return not isinstance(value, jax.core.Tracer)


# Rates are float32: a larger value would be infinite, and the schedule NaN.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_value(
    fn: str,
    name: str,
    value: Any,
    *,
    allow_schedule: bool = False,
    positive: bool = False,
) -> float | None:
  """Checks a schedule value: a float32 number >= 0 (> 0 with `positive`).

  Args:
    fn: name of the calling factory, used in the message.
    name: name of the argument, used in the message.
    value: the argument.
    allow_schedule: whether a callable (an optax schedule) is also accepted.
    positive: require a value > 0 rather than >= 0.

  Returns:
    The value as a Python float; None when it is a schedule or traced.

  Raises:
    ValueError: `value` is out of range, infinite in float32, or NaN.
  """
  if (allow_schedule and callable(value)) or not is_concrete(value):
    return None
  number = float(value)
  above_bound = number > 0 if positive else number >= 0
  if not (above_bound and number <= FLOAT32_MAX):  # NaN fails both
    bound = '> 0' if positive else '>= 0'
    raise ValueError(
        f'{fn}: `{name}` must be a finite float32 number {bound}, got '
        f'{value!r}.')
  return number


# optax counts steps in int32, and with jax_enable_x64 an int32 count wraps a
# larger Python int silently: no count, period or boundary can exceed it.
MAX_STEP = 2**31 - 1


def check_int(fn: str, name: str, value: Any, *, minimum: int) -> int:
  """Returns `value` as a Python int, checked to be in [minimum, 2**31 - 1].

  A float is refused too: JAX would truncate it silently.
  """
  if not (isinstance(value, numbers.Integral)
          and minimum <= int(value) <= MAX_STEP):
    raise ValueError(
        f'{fn}: `{name}` must be an int in [{minimum}, 2**31 - 1] (counts '
        f'are int32), got {value!r}.')
  return int(value)


def check_order(fn: str, low_name: str, low: float | None, high_name: str,
                high: float | None) -> None:
  """Checks `low <= high` where both are known."""
  if low is not None and high is not None and low > high:
    raise ValueError(
        f'{fn}: `{low_name}` must be <= `{high_name}`, got {low_name}={low} '
        f'and {high_name}={high}.')


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
  if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype,
                                                   jax.dtypes.prng_key):
    if jnp.shape(key) != ():
      raise ValueError(
          f'{fn}: `key` must be a single key, got a batch of keys of shape '
          f'{jnp.shape(key)}. To run many seeds, build the schedule inside '
          'jax.vmap over the keys.')
    return key
  if jnp.shape(key) == (2,):
    return jax.random.wrap_key_data(key)
  if is_concrete(key) and not 0 <= operator.index(key) <= MAX_SEED:
    raise ValueError(
        f'{fn}: `key` must be a typed key, a legacy uint32 key or an int '
        f'seed in [0, 2**32 - 1], got the seed {key!r}: outside that range '
        'jax.random.key wraps it (2**32 gives the key of seed 0) or gives '
        'another key when jax_enable_x64 is set. Fold a large id into a key '
        'instead: jax.random.fold_in(jax.random.key(0), id % 2**32).')
  return jax.random.key(key)


def as_schedule(value: optax.ScalarOrSchedule) -> optax.Schedule:
  """Returns `value` as a schedule: itself if callable, else a constant."""
  if callable(value):
    return value
  return lambda count: jnp.asarray(value, dtype=jnp.result_type(float))
