"""PLRS: distribution, determinism, composition with optax, and devices."""

import dataclasses
import functools
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import plrs_jax

L_MIN, L_MAX = 0.07, 0.1
N_DRAWS = 100_000


def _rates(schedule, num_steps, start=0):
  return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(start, num_steps)))


def _assert_same_rates(actual, expected):
  # Different compiled programs may fuse `low + u * (high - low)` into one FMA
  # or not: the same draw then differs in the last bit. Within one program
  # (replicas, resumed runs) the tests below demand exact equality.
  np.testing.assert_array_max_ulp(np.asarray(actual, np.float32),
                                  np.asarray(expected, np.float32), maxulp=1)


# --- distribution -----------------------------------------------------------


@pytest.fixture(scope='module')
def draws():
  schedule = plrs_jax.plrs_schedule(jax.random.key(42), L_MIN, L_MAX)
  return _rates(schedule, N_DRAWS).astype(np.float64)


def test_draws_are_uniform_on_the_bounds(draws):
  # The closed interval of the paper, between the float32 bounds.
  assert draws.min() >= np.float32(L_MIN) and draws.max() <= np.float32(L_MAX)
  # Kolmogorov-Smirnov against U[L_MIN, L_MAX]: a correct sampler fails this
  # one time in 1000.
  result = stats.kstest(draws, stats.uniform(loc=L_MIN, scale=L_MAX - L_MIN).cdf)
  assert result.pvalue > 1e-3, result


def test_mean_and_variance_match_the_uniform_law(draws):
  width = L_MAX - L_MIN
  mean, var = (L_MIN + L_MAX) / 2, width**2 / 12
  # Standard errors of the sample mean and variance of U[a, b]: sd / sqrt(n)
  # and sqrt((mu4 - var^2) / n) with mu4 = width^4 / 80. Tolerance: 5 SE.
  se_mean = np.sqrt(var / N_DRAWS)
  se_var = np.sqrt((width**4 / 80 - var**2) / N_DRAWS)
  assert abs(draws.mean() - mean) < 5 * se_mean
  assert abs(draws.var() - var) < 5 * se_var


def test_successive_draws_are_uncorrelated(draws):
  centered = draws - draws.mean()
  lag1 = np.dot(centered[:-1], centered[1:]) / np.dot(centered, centered)
  # Under independence lag-1 autocorrelation is ~N(0, 1/n); 5 SD tolerance.
  assert abs(lag1) < 5 / np.sqrt(N_DRAWS)


def test_noise_is_zero_mean_around_the_center(draws):
  schedule = plrs_jax.plrs_schedule(jax.random.key(42), L_MIN, L_MAX)
  noise = np.asarray(jax.vmap(schedule.noise)(jnp.arange(N_DRAWS)))
  np.testing.assert_allclose(noise, draws - (L_MIN + L_MAX) / 2, atol=1e-7)
  half = (L_MAX - L_MIN) / 2
  # The center is float32 too: allow its rounding (half an ulp of 0.085).
  slack = np.spacing(np.float32(0.085))
  assert noise.min() >= -half - slack and noise.max() <= half + slack
  assert abs(noise.mean()) < 5 * np.sqrt((L_MAX - L_MIN) ** 2 / 12 / N_DRAWS)
  # An explicit center shifts the noise, not the rates.
  shifted = plrs_jax.plrs_schedule(jax.random.key(42), L_MIN, L_MAX, center=0.08)
  _assert_same_rates(_rates(shifted, 100), draws[:100])
  np.testing.assert_allclose(shifted.noise(5), draws[5] - 0.08, atol=1e-7)


@pytest.mark.parametrize('hold_steps', [2, 7, 50])
def test_hold_steps_gives_constant_runs_of_exactly_k(hold_steps):
  schedule = plrs_jax.plrs_schedule(0, L_MIN, L_MAX, hold_steps=hold_steps)
  rates = _rates(schedule, 20 * hold_steps).reshape(20, hold_steps)
  assert (rates == rates[:, :1]).all(), 'rate changed inside a block'
  # Consecutive blocks differ (continuous draws: equal with probability 0).
  assert (np.diff(rates[:, 0]) != 0).all()


def test_warmup_is_exactly_linear_then_samples():
  warmup = 50
  schedule = plrs_jax.plrs_schedule(3, L_MIN, L_MAX, warmup_steps=warmup)
  rates = _rates(schedule, 400)
  steps = np.arange(warmup)
  expected = L_MIN + (L_MAX - L_MIN) * steps / warmup
  np.testing.assert_allclose(rates[:warmup], expected, rtol=1e-6)
  # After the warmup: the schedule without one, started `warmup` steps later.
  plain = _rates(plrs_jax.plrs_schedule(3, L_MIN, L_MAX), 400)
  _assert_same_rates(rates[warmup:], plain[:400 - warmup])


def test_equal_bounds_give_a_constant_rate():
  rates = _rates(plrs_jax.plrs_schedule(0, 0.1, 0.1), 100)
  np.testing.assert_allclose(rates, 0.1, rtol=1e-7)


def test_schedule_bounds_are_respected():
  total = 500
  max_value = optax.cosine_decay_schedule(0.3, total, alpha=0.2)
  min_value = optax.linear_schedule(0.01, 0.05, total)
  schedule = plrs_jax.plrs_schedule(1, min_value, max_value)
  rates = _rates(schedule, total + 50)
  steps = np.minimum(np.arange(total + 50), total)
  # Bounds in closed form (optax's cosine decay and linear schedule).
  high = 0.3 * (0.2 + 0.8 * 0.5 * (1 + np.cos(np.pi * steps / total)))
  low = 0.01 + 0.04 * steps / total
  assert (rates >= low - 1e-7).all() and (rates <= high + 1e-7).all()
  # The draws fill the band, not one edge of it.
  position = (rates - low) / (high - low)
  assert position.min() < 0.05 and position.max() > 0.95
  default_center = 0.5 * (low + high)
  noise = np.asarray(jax.vmap(schedule.noise)(jnp.arange(total + 50)))
  np.testing.assert_allclose(noise, rates - default_center, atol=1e-6)


# --- determinism ------------------------------------------------------------


def test_same_key_same_rates_eager_jit_and_vmap():
  schedule = plrs_jax.plrs_schedule(jax.random.key(7), L_MIN, L_MAX)
  vmapped = _rates(schedule, 64)
  eager = np.array([float(schedule(t)) for t in range(64)], np.float32)
  jitted = np.array([jax.jit(schedule)(jnp.int32(t)) for t in range(64)])
  _assert_same_rates(eager, vmapped)
  _assert_same_rates(jitted, vmapped)


def test_key_forms_agree():
  typed = _rates(plrs_jax.plrs_schedule(jax.random.key(5), L_MIN, L_MAX), 32)
  legacy = _rates(plrs_jax.plrs_schedule(jax.random.PRNGKey(5), L_MIN, L_MAX), 32)
  seed = _rates(plrs_jax.plrs_schedule(5, L_MIN, L_MAX), 32)
  _assert_same_rates(typed, legacy)
  _assert_same_rates(typed, seed)


def test_different_keys_give_different_rates():
  a = _rates(plrs_jax.plrs_schedule(0, L_MIN, L_MAX), 100)
  b = _rates(plrs_jax.plrs_schedule(1, L_MIN, L_MAX), 100)
  assert (a != b).all()


@pytest.mark.slow
def test_same_rates_in_a_fresh_process():
  code = textwrap.dedent("""
      import jax, jax.numpy as jnp, numpy as np, plrs_jax
      s = plrs_jax.plrs_schedule(jax.random.key(11), 0.07, 0.1)
      print(repr(np.asarray(jax.vmap(s)(jnp.arange(20))).tolist()))
  """)
  out = subprocess.run(
      [sys.executable, '-c', code], capture_output=True, text=True, check=True,
      env={'JAX_PLATFORMS': 'cpu', 'PATH': ''},
  ).stdout
  here = _rates(plrs_jax.plrs_schedule(jax.random.key(11), L_MIN, L_MAX), 20)
  _assert_same_rates(np.array(eval(out)), here)


def _quadratic_run(schedule, params, opt_state, start, stop):
  """SGD on f(w) = 0.5 * sum(a * w**2); returns params, state, recorded rates."""
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
  a = jnp.array([1.0, 2.0, 3.0])

  @jax.jit
  def step(params, opt_state):
    grads = jax.grad(lambda w: 0.5 * jnp.sum(a * w**2))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  if opt_state is None:
    opt_state = tx.init(params)
  rates = []
  for _ in range(start, stop):
    params, opt_state = step(params, opt_state)
    rates.append(float(opt_state.hyperparams['learning_rate']))
  return params, opt_state, rates


def test_resume_continues_the_uninterrupted_sequence():
  schedule = plrs_jax.plrs_schedule(jax.random.key(3), L_MIN, L_MAX)
  w0 = jnp.ones(3)
  full, _, full_rates = _quadratic_run(schedule, w0, None, 0, 30)
  # Stop at step 12, keep only the arrays (as a checkpoint would), resume.
  half, state, first = _quadratic_run(schedule, w0, None, 0, 12)
  state = jax.tree.map(np.asarray, state)
  resumed, _, second = _quadratic_run(schedule, half, state, 12, 30)
  assert first + second == full_rates
  np.testing.assert_array_equal(resumed, full)


# --- composition with optax -------------------------------------------------


def test_inject_hyperparams_records_the_rate_used_at_each_step():
  schedule = plrs_jax.plrs_schedule(jax.random.key(9), L_MIN, L_MAX)
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
  a = np.array([1.0, 2.0, 3.0])
  w = np.array([1.0, -1.0, 0.5], np.float32)
  params = jnp.asarray(w)
  opt_state = tx.init(params)
  grad_fn = jax.jit(jax.grad(lambda v: 0.5 * jnp.sum(jnp.asarray(a) * v**2)))
  update = jax.jit(tx.update)
  for t in range(25):
    updates, opt_state = update(grad_fn(params), opt_state, params)
    # The update at count t uses schedule(t) and records it in the new state.
    recorded = float(opt_state.hyperparams['learning_rate'])
    np.testing.assert_array_max_ulp(np.float32(recorded), schedule(t), 1)
    # Plain SGD by hand in numpy: update = -lr_t * grad, grad = a * w.
    expected = -np.float32(recorded) * (a * w).astype(np.float32)
    np.testing.assert_allclose(updates, expected, rtol=1e-6)
    w = w + expected
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(params, w, rtol=1e-5)


def test_join_schedules_with_a_warmup():
  warmup = 20
  plrs = plrs_jax.plrs_schedule(jax.random.key(2), L_MIN, L_MAX)
  joined = optax.join_schedules(
      [optax.linear_schedule(0.0, L_MIN, warmup), plrs], [warmup])
  rates = _rates(joined, 200)
  np.testing.assert_allclose(
      rates[:warmup], L_MIN * np.arange(warmup) / warmup, rtol=1e-6)
  # join_schedules restarts the count at the boundary.
  _assert_same_rates(rates[warmup:], _rates(plrs, 200 - warmup))


# --- many keys and many devices ---------------------------------------------


def test_vmap_over_keys_equals_separate_runs():
  keys = jax.random.split(jax.random.key(0), 8)
  a = jnp.array([1.0, 2.0, 3.0])

  def train(key):
    tx = optax.sgd(plrs_jax.plrs_schedule(key, 0.1, 0.3))
    w = jnp.ones(3)
    state = tx.init(w)
    for _ in range(20):
      grads = a * w
      updates, state = tx.update(grads, state, w)
      w = optax.apply_updates(w, updates)
    return w

  together = jax.jit(jax.vmap(train))(keys)
  separate = np.stack([np.asarray(jax.jit(train)(k)) for k in keys])
  np.testing.assert_allclose(together, separate, rtol=1e-6)
  assert len({tuple(np.round(row, 6)) for row in separate}) == 8


def test_every_replica_reads_the_same_rate_under_pmap():
  n = jax.local_device_count()
  assert n == 8, 'conftest sets 8 simulated CPU devices'
  schedule = plrs_jax.plrs_schedule(jax.random.key(4), L_MIN, L_MAX)
  # Each device holds its own copy of the step counts, as optimizer state does.
  counts = jnp.broadcast_to(jnp.arange(50), (n, 50))
  per_device = jax.pmap(jax.vmap(schedule))(counts)
  per_device = np.asarray(per_device)
  assert per_device.shape == (n, 50)
  assert (per_device == per_device[:1]).all(), 'replicas disagree'
  _assert_same_rates(per_device[0], _rates(schedule, 50))


def test_data_parallel_step_equals_single_device_step():
  n = jax.local_device_count()
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8 * n, 5)).astype(np.float32)
  y = rng.normal(size=(8 * n,)).astype(np.float32)
  w0 = rng.normal(size=(5,)).astype(np.float32)
  tx = optax.inject_hyperparams(optax.sgd)(
      learning_rate=plrs_jax.plrs_schedule(jax.random.key(6), L_MIN, L_MAX))

  def loss(w, xb, yb):
    return jnp.mean((xb @ w - yb) ** 2)

  def step(w, state, xb, yb, axis_name=None):
    grads = jax.grad(loss)(w, xb, yb)
    if axis_name:
      grads = jax.lax.pmean(grads, axis_name)
    updates, state = tx.update(grads, state, w)
    return optax.apply_updates(w, updates), state, state.hyperparams[
        'learning_rate']

  single_w, single_state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
  p_step = jax.pmap(lambda *a: step(*a, axis_name='batch'), axis_name='batch')
  replicate = lambda t: jax.tree.map(lambda v: jnp.stack([v] * n), t)
  multi_w, multi_state = replicate(jnp.asarray(w0)), replicate(tx.init(w0))
  shard = lambda v: v.reshape(n, -1, *v.shape[1:])
  for _ in range(10):
    single_w, single_state, _ = jax.jit(step)(single_w, single_state, x, y)
    multi_w, multi_state, rates = p_step(multi_w, multi_state, shard(x),
                                         shard(y))
    assert (np.asarray(rates) == np.asarray(rates)[0]).all()
    assert (np.asarray(multi_w) == np.asarray(multi_w)[:1]).all()
  np.testing.assert_allclose(multi_w[0], single_w, rtol=1e-5, atol=1e-6)


# --- bad inputs ---------------------------------------------------------------

BAD_CALLS = [
    (dict(min_value=0.2, max_value=0.1), ValueError, 'min_value.*max_value'),
    (dict(min_value=-0.1, max_value=0.1), ValueError, 'min_value'),
    (dict(min_value=0.0, max_value=float('inf')), ValueError, 'max_value'),
    (dict(min_value=0.0, max_value=1e300), ValueError, 'max_value'),
    (dict(min_value=float('nan'), max_value=0.1), ValueError, 'min_value'),
    (dict(min_value=0.1, max_value=0.2, hold_steps=0), ValueError, 'hold_steps'),
    (dict(min_value=0.1, max_value=0.2, warmup_steps=-1), ValueError,
     'warmup_steps'),
    # JAX would take a float count and truncate it.
    (dict(min_value=0.1, max_value=0.2, hold_steps=2.5), ValueError,
     'hold_steps'),
    (dict(min_value=0.1, max_value=0.2, warmup_steps=1.5), ValueError,
     'warmup_steps'),
    (dict(min_value=0.1, max_value=0.2, center=0.3), ValueError, 'center'),
    (dict(min_value=0.1, max_value=0.2, center=0.05), ValueError, 'center'),
    (dict(key=jax.random.split(jax.random.key(0), 4), min_value=0.1,
          max_value=0.2), ValueError, 'key.*vmap'),
]


@pytest.mark.parametrize('kwargs,error,pattern', BAD_CALLS)
def test_bad_inputs_raise_naming_the_argument(kwargs, error, pattern):
  kwargs = {'key': 0, **kwargs}
  with pytest.raises(error, match=pattern):
    plrs_jax.plrs_schedule(**kwargs)


# --- float32 whatever the precision flag ---------------------------------------

_X64_PROGRAM = textwrap.dedent("""
    import sys
    import jax
    jax.config.update('jax_enable_x64', sys.argv[1] == 'on')
    import jax.numpy as jnp, numpy as np, optax, plrs_jax
    plain = plrs_jax.plrs_schedule(jax.random.key(11), 0.07, 0.1)
    annealed = plrs_jax.plrs_schedule(
        2**32 - 1, 0.01, optax.cosine_decay_schedule(0.1, 300), hold_steps=3,
        warmup_steps=5)
    out = []
    for s in (plain, annealed):
      jitted = jax.jit(jax.vmap(s))(jnp.arange(300, dtype=jnp.int32))
      eager = jnp.stack([s(t) for t in range(0, 300, 37)])
      for rates in (jitted, eager):
        out.append((str(rates.dtype), np.asarray(rates).view(np.uint32).tolist()))
    print(repr(out))
""")


def _run_x64(flag):
  return eval(subprocess.run(  # pylint: disable=eval-used
      [sys.executable, '-c', _X64_PROGRAM, flag], capture_output=True,
      text=True, check=True, env={'JAX_PLATFORMS': 'cpu', 'PATH': ''}).stdout)


@pytest.mark.slow
def test_x64_flag_changes_no_rate_and_no_dtype():
  off, on = _run_x64('off'), _run_x64('on')
  assert [dtype for dtype, _ in on] == ['float32'] * 4
  # Float bounds: bit for bit, the same float32 program runs under both flags.
  assert on[:2] == off[:2]
  # A schedule-valued bound is the user's code: optax's cosine computes in
  # float64 under x64 and is then rounded to float32, where float32 cos is
  # within an ulp or so of 0.1 (its largest value) of the float64 one; the
  # draws themselves are the same. Measured: 1.25 ulp of 0.1.
  for (_, a), (_, b) in zip(on[2:], off[2:]):
    np.testing.assert_allclose(np.array(a, np.uint32).view(np.float32),
                               np.array(b, np.uint32).view(np.float32),
                               rtol=0, atol=2 * np.spacing(np.float32(0.1)))
  # And the rates are those of this process (x64 off), to 1 ulp (eager vs jit).
  here = _rates(plrs_jax.plrs_schedule(jax.random.key(11), L_MIN, L_MAX), 300)
  _assert_same_rates(np.array(off[0][1], np.uint32).view(np.float32), here)


# --- the closed interval, for every float32 draw ---------------------------------

_F32 = np.finfo(np.float32)
BOUND_PAIRS = [
    (0.07, 0.1), (0.35, 0.4), (0.05, 0.11), (0.0, 1.0), (0.1, 0.1),
    # max - min tiny: one ulp apart, and equal.
    (1.0, float(np.nextafter(np.float32(1), np.float32(2)))),
    # max - min huge: the whole float32 range.
    (float(_F32.smallest_normal), float(_F32.max)), (0.0, float(_F32.max)),
    (1e-30, 3e38),
    # Crossed (schedule-valued bounds may cross): between the two either way.
    (0.1, 0.07), (3e38, 1e-30),
]


@pytest.fixture(scope='module')
def every_u():
  # Every value jax.random.uniform(key, (), float32) can return: k * 2**-23.
  return np.arange(2**23, dtype=np.float32) * np.float32(2**-23)


@pytest.mark.parametrize('low,high', BOUND_PAIRS)
def test_rate_stays_in_the_closed_interval_for_every_u(every_u, low, high):
  low32, high32 = np.float32(low), np.float32(high)
  bottom, top = min(low32, high32), max(low32, high32)
  # float64 reference; a float32 evaluation is within 1.5 ulp of the larger
  # bound (rounding of the difference, the product and the sum, or of one
  # fused multiply-add).
  reference = np.float64(low32) + every_u.astype(np.float64) * (
      np.float64(high32) - np.float64(low32))
  tolerance = 1.5 * np.spacing(np.float64(top)) * 2**29  # float32 ulp
  ways = {
      'eager': lambda: plrs_jax.plrs.interpolate(low32, high32, every_u),
      'jit': lambda: jax.jit(plrs_jax.plrs.interpolate)(low32, high32,
                                                          every_u),
      'jit, constant bounds': lambda: jax.jit(
          lambda u: plrs_jax.plrs.interpolate(low, high, u))(every_u),
  }
  for way, evaluate in ways.items():
    rates = np.asarray(evaluate())
    assert rates.dtype == np.float32
    assert rates.min() >= bottom and rates.max() <= top, way
    assert rates[0] == low32, way
    assert np.abs(rates - reference).max() <= tolerance, way


def test_top_draw_reaches_max_value_under_jit(every_u):
  # Why the interval is documented closed: the fused multiply-add of the
  # largest u lands exactly on float32(max_value) for the README's bounds.
  top = jax.jit(lambda u: plrs_jax.plrs.interpolate(L_MIN, L_MAX, u))(
      every_u[-1:])
  assert top[0] == np.float32(L_MAX)


# --- schedule-valued bounds that cross or go negative ---------------------------


def test_crossing_schedule_bounds_give_rates_between_them():
  total = 1000
  schedule = plrs_jax.plrs_schedule(
      5, min_value=0.01, max_value=optax.cosine_decay_schedule(0.1, total))
  steps = np.arange(total + 200)
  rates = _rates(schedule, total + 200)
  # optax's cosine decay in closed form; it falls below 0.01 near the end.
  high = 0.1 * 0.5 * (1 + np.cos(np.pi * np.minimum(steps, total) / total))
  assert (high < 0.01).sum() > 100
  bottom, top = np.minimum(0.01, high), np.maximum(0.01, high)
  slack = np.spacing(np.float32(0.1))  # float32 evaluation of the bounds
  assert (rates >= bottom - slack).all() and (rates <= top + slack).all()
  position = (rates - bottom) / np.maximum(top - bottom, 1e-12)
  crossed = high < 0.005
  assert position[crossed].min() < 0.1 and position[crossed].max() > 0.9


def test_a_negative_bound_is_an_error_eagerly_and_nan_when_traced():
  # optax's linear schedule goes negative past 0 when asked to.
  schedule = plrs_jax.plrs_schedule(
      0, min_value=optax.linear_schedule(0.05, -0.05, 100), max_value=0.1)
  assert 0.0 <= float(schedule(10)) <= 0.1  # min_value(10) = 0.04
  with pytest.raises(ValueError, match='min_value.*step 80'):
    schedule(80)
  rates = _rates(schedule, 100)
  # min_value(t) = 0.05 - 0.001 t is negative from t = 51.
  assert np.isfinite(rates[:50]).all() and np.isnan(rates[51:]).all()


# --- a pytree value -------------------------------------------------------------


def test_schedule_is_a_pytree_with_the_key_as_its_only_leaf():
  schedule = plrs_jax.plrs_schedule(3, L_MIN, L_MAX, hold_steps=4)
  leaves, treedef = jax.tree.flatten(schedule)
  assert len(leaves) == 1 and leaves[0] is schedule.key
  rebuilt = jax.tree.unflatten(treedef, leaves)
  assert (rebuilt.min_value, rebuilt.max_value, rebuilt.hold_steps,
          rebuilt.warmup_steps) == (L_MIN, L_MAX, 4, 0)
  np.testing.assert_array_equal(_rates(rebuilt, 20), _rates(schedule, 20))


def test_replace_validates_like_the_factory():
  schedule = plrs_jax.plrs_schedule(0, L_MIN, L_MAX)
  with pytest.raises(ValueError, match='hold_steps'):
    dataclasses.replace(schedule, hold_steps=0)
  with pytest.raises(ValueError, match='min_value.*max_value'):
    dataclasses.replace(schedule, min_value=0.2)
  longer = dataclasses.replace(schedule, hold_steps=3)
  rates = _rates(longer, 9)
  assert (rates[:3] == rates[0]).all() and rates[3] != rates[0]


def test_a_schedule_argument_of_jit_traces_once_per_setting():
  traces = []

  @jax.jit
  def rates_of(schedule, steps):
    traces.append(None)
    return jax.vmap(schedule)(steps)

  steps = jnp.arange(64)
  decay = optax.cosine_decay_schedule(0.1, 64)
  for seed in range(4):
    for max_value in (L_MAX, decay):
      schedule = plrs_jax.plrs_schedule(seed, L_MIN, max_value)
      np.testing.assert_array_equal(rates_of(schedule, steps),
                                    _rates(schedule, 64))
  # Eight schedules, two settings: the key is data, the rest is static.
  assert len(traces) == 2
  rates_of(plrs_jax.plrs_schedule(0, L_MIN, L_MAX, hold_steps=2), steps)
  assert len(traces) == 3


def test_vmap_returns_a_batch_of_schedules():
  keys = jax.random.split(jax.random.key(0), 4)
  batch = jax.vmap(lambda k: plrs_jax.plrs_schedule(k, L_MIN, L_MAX))(keys)
  assert batch.key.shape == (4,)
  together = jax.vmap(lambda s: jax.vmap(s)(jnp.arange(10)))(batch)
  for key, row in zip(keys, np.asarray(together)):
    _assert_same_rates(row, _rates(plrs_jax.plrs_schedule(key, L_MIN, L_MAX),
                                   10))


# --- per-epoch sampling after a warmup ------------------------------------------


@pytest.mark.parametrize('hold_steps,warmup_steps', [(7, 10), (390, 1000),
                                                     (4, 4)])
def test_blocks_start_where_sampling_starts(hold_steps, warmup_steps):
  schedule = plrs_jax.plrs_schedule(1, L_MIN, L_MAX, hold_steps=hold_steps,
                                    warmup_steps=warmup_steps)
  sampled = _rates(schedule, warmup_steps + 5 * hold_steps)[warmup_steps:]
  blocks = sampled.reshape(5, hold_steps)
  assert (blocks == blocks[:, :1]).all(), 'a block is not hold_steps long'
  assert (np.diff(blocks[:, 0]) != 0).all()
  plain = _rates(plrs_jax.plrs_schedule(1, L_MIN, L_MAX,
                                        hold_steps=hold_steps),
                 5 * hold_steps)
  _assert_same_rates(sampled, plain)


# --- integers that cannot be represented ----------------------------------------


@pytest.mark.parametrize('seed', [2**32, 2**40, 2**63, 2**70, -1,
                                  np.int64(2**40), np.uint64(2**63)])
def test_seeds_beyond_uint32_are_refused_not_aliased(seed):
  with pytest.raises(ValueError, match=r'key.*\[0, 2\*\*32 - 1\]'):
    plrs_jax.plrs_schedule(seed, L_MIN, L_MAX)


def test_largest_seed_is_its_own_key():
  largest = _rates(plrs_jax.plrs_schedule(2**32 - 1, L_MIN, L_MAX), 16)
  zero = _rates(plrs_jax.plrs_schedule(0, L_MIN, L_MAX), 16)
  # Its key data is (0, 2**32 - 1) whatever jax_enable_x64 says.
  typed = jax.random.wrap_key_data(jnp.array([0, 2**32 - 1], jnp.uint32))
  np.testing.assert_array_equal(
      largest, _rates(plrs_jax.plrs_schedule(typed, L_MIN, L_MAX), 16))
  assert (largest != zero).all()


@pytest.mark.parametrize('name', ['hold_steps', 'warmup_steps'])
@pytest.mark.parametrize('value', [2**31, 2**40, 2**64])
def test_step_counts_beyond_int32_are_refused(name, value):
  with pytest.raises(ValueError, match=rf'{name}.*2\*\*31 - 1'):
    plrs_jax.plrs_schedule(0, L_MIN, L_MAX, **{name: value})
  # The largest is accepted and works.
  schedule = plrs_jax.plrs_schedule(0, L_MIN, L_MAX, **{name: 2**31 - 1})
  assert np.isfinite(float(schedule(2**31 - 2)))


# --- jit over a mesh, and shard_map ------------------------------------------------


def _sharded_sgd_problem():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(64, 5)).astype(np.float32)
  y = rng.normal(size=(64,)).astype(np.float32)
  tx = optax.inject_hyperparams(optax.sgd)(
      learning_rate=plrs_jax.plrs_schedule(jax.random.key(8), L_MIN, L_MAX))
  loss = lambda w, xb, yb: jnp.mean((xb @ w - yb) ** 2)
  return x, y, tx, loss


def _single_device_run(x, y, tx, loss, num_steps):
  @jax.jit
  def step(w, state):
    updates, state = tx.update(jax.grad(loss)(w, x, y), state, w)
    return optax.apply_updates(w, updates), state

  w = jnp.zeros(5)
  state = tx.init(w)
  rates = []
  for _ in range(num_steps):
    w, state = step(w, state)
    rates.append(np.asarray(state.hyperparams['learning_rate']))
  return w, np.stack(rates)


def test_jit_over_a_mesh_equals_the_single_device_step():
  mesh = jax.make_mesh((8,), ('batch',))
  x, y, tx, loss = _sharded_sgd_problem()
  rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  @jax.jit
  def step(w, state, xb, yb):
    updates, state = tx.update(jax.grad(loss)(w, xb, yb), state, w)
    return optax.apply_updates(w, updates), state

  w = jax.device_put(jnp.zeros(5), replicated)
  state = jax.device_put(tx.init(jnp.zeros(5)), replicated)
  xs, ys = jax.device_put(x, rows), jax.device_put(y, rows)
  rates = []
  for _ in range(10):
    w, state = step(w, state, xs, ys)
    rate = state.hyperparams['learning_rate']
    # Replicated: every device holds the same rate.
    shards = [np.asarray(s.data) for s in rate.addressable_shards]
    assert len(shards) == 8 and all(s == shards[0] for s in shards)
    rates.append(shards[0])
  single_w, single_rates = _single_device_run(x, y, tx, loss, 10)
  np.testing.assert_array_equal(np.stack(rates), single_rates)
  # The mean over 8 shards is summed in another order: float32 rounding.
  np.testing.assert_allclose(w, single_w, rtol=1e-5, atol=1e-6)


def test_shard_map_step_with_the_loss_averaged_equals_the_single_device_step():
  mesh = jax.make_mesh((8,), ('batch',))
  x, y, tx, loss = _sharded_sgd_problem()
  spec = jax.sharding.PartitionSpec

  @jax.jit
  @functools.partial(jax.shard_map, mesh=mesh,
                     in_specs=(spec(), spec(), spec('batch'), spec('batch')),
                     out_specs=(spec(), spec(), spec('batch')))
  def step(w, state, xb, yb):
    # With check_vma, the gradient of the replicated w is already summed over
    # devices: average the loss, not the gradients (a pmean of the gradients
    # would multiply them by 8).
    grads = jax.grad(lambda v: jax.lax.pmean(loss(v, xb, yb), 'batch'))(w)
    updates, state = tx.update(grads, state, w)
    rate = state.hyperparams['learning_rate']
    return optax.apply_updates(w, updates), state, rate[None]

  # make_mesh's axes are Explicit: the batch must already be sharded.
  rows = jax.sharding.NamedSharding(mesh, spec('batch'))
  xs, ys = jax.device_put(x, rows), jax.device_put(y, rows)
  w, state = jnp.zeros(5), tx.init(jnp.zeros(5))
  rates = []
  for _ in range(10):
    w, state, per_device = step(w, state, xs, ys)
    per_device = np.asarray(per_device)
    assert per_device.shape == (8,) and (per_device == per_device[0]).all()
    rates.append(per_device[0])
  single_w, single_rates = _single_device_run(x, y, tx, loss, 10)
  np.testing.assert_array_equal(np.stack(rates), single_rates)
  np.testing.assert_allclose(w, single_w, rtol=1e-5, atol=1e-6)
