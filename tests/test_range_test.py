"""lr_range_test and suggest_bounds against numpy and least-squares theory.

On least squares ``||X w - y||^2 / (2 n)`` the Hessian is ``X^T X / n`` and
its top eigenvalue beta is known from numpy. Full-batch gradient descent at a
rate below ``2 / beta`` contracts every error component, so the loss cannot
rise there; above ``2 / beta`` the top component grows. The tests hold the
range test to that.
"""

import functools
import itertools

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from plrs_jax import lr_range_test
from plrs_jax import RangeTestResult
from plrs_jax import suggest_bounds

N, D = 256, 8


@pytest.fixture(scope='module')
def problem():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, D))
  y = x @ rng.normal(size=D) + 0.3 * rng.normal(size=N)
  beta = np.linalg.eigvalsh(x.T @ x / N).max()
  return x.astype(np.float32), y.astype(np.float32), beta


def _loss_fn(w, batch):
  inputs, targets = batch
  return jnp.mean((inputs @ w - targets) ** 2) / 2


def _numpy_loss(w, x, y):
  return np.mean((x @ w - y) ** 2) / 2


def _exponential_rates(min_lr, max_lr, num_steps):
  return np.array([min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))
                   for i in range(num_steps)])


def _minibatches(x, y, size, seed):
  rng = np.random.default_rng(seed)
  while True:
    index = rng.choice(len(x), size, replace=False)
    yield x[index], y[index]


def _bias_corrected_ema(losses, smoothing):
  beta, average, out = 1 - smoothing, 0.0, []
  for i, loss in enumerate(losses):
    average = beta * average + (1 - beta) * loss
    out.append(average / (1 - beta ** (i + 1)))
  return np.array(out)


# --- the recorded curve ------------------------------------------------------


def test_rates_and_losses_match_numpy_gradient_descent(problem):
  x, y, _ = problem
  result = lr_range_test(_loss_fn, jnp.zeros(D), itertools.repeat((x, y)),
                         min_lr=1e-3, max_lr=0.5, num_steps=40)
  assert isinstance(result, RangeTestResult)
  assert result.diverged_step is None
  expected_rates = _exponential_rates(1e-3, 0.5, 40)
  assert result.learning_rates.shape == result.losses.shape == (40,)
  assert result.raw_losses.shape == (40,)
  np.testing.assert_allclose(result.learning_rates, expected_rates, rtol=1e-12)
  # The same run in float64 numpy: loss before each update, then
  # w <- w - lr_i * X^T (X w - y) / n.
  w, expected_losses = np.zeros(D), []
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  for rate in expected_rates:
    expected_losses.append(_numpy_loss(w, x64, y64))
    w = w - rate * x64.T @ (x64 @ w - y64) / N
  np.testing.assert_allclose(result.raw_losses, expected_losses, rtol=1e-4)
  np.testing.assert_allclose(
      result.losses, _bias_corrected_ema(expected_losses, 0.05), rtol=1e-4)


def test_smoothing_is_the_bias_corrected_moving_average(problem):
  x, y, _ = problem
  result = lr_range_test(
      _loss_fn, jnp.zeros(D), _minibatches(x, y, 16, seed=1),
      min_lr=1e-3, max_lr=0.5, num_steps=30, smoothing=0.3)
  np.testing.assert_allclose(
      result.losses, _bias_corrected_ema(result.raw_losses, 0.3), rtol=1e-12)
  assert result.losses[0] == result.raw_losses[0]


def test_momentum_optimizer_gets_the_rate_of_each_step(problem):
  x, y, _ = problem
  result = lr_range_test(
      _loss_fn, jnp.zeros(D), itertools.repeat((x, y)), min_lr=1e-3,
      max_lr=0.3, num_steps=25,
      optimizer=functools.partial(optax.sgd, momentum=0.9))
  # Heavy ball as optax writes it: m <- g + 0.9 m, w <- w - lr_i m.
  w, m, expected = np.zeros(D), np.zeros(D), []
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  for rate in _exponential_rates(1e-3, 0.3, 25):
    expected.append(_numpy_loss(w, x64, y64))
    m = x64.T @ (x64 @ w - y64) / N + 0.9 * m
    w = w - rate * m
  np.testing.assert_allclose(result.raw_losses, expected, rtol=1e-4)


def test_the_step_compiles_once(problem):
  x, y, _ = problem
  traces = []

  def loss_fn(w, batch):
    traces.append(None)  # runs only while JAX traces
    return _loss_fn(w, batch)

  result = lr_range_test(loss_fn, jnp.zeros(D), itertools.repeat((x, y)),
                         min_lr=1e-3, max_lr=0.5, num_steps=30)
  assert len(result.raw_losses) == 30
  assert len(traces) == 1
  traces.clear()
  lr_range_test(loss_fn, jnp.zeros(D),
                _minibatches(x, y, 32, seed=0), num_steps=30,
                optimizer=optax.adam)
  assert len(traces) == 1


# --- divergence and the suggestion --------------------------------------------


@pytest.mark.parametrize('batches', ['full', 'minibatch'])
def test_suggested_bounds_against_beta(problem, batches):
  x, y, beta = problem
  data = (itertools.repeat((x, y)) if batches == 'full'
          else _minibatches(x, y, 32, seed=2))
  # 2 / beta is about 1.4 here, well inside the range. Full-batch, the loss
  # rises only far past it (see below): a range to 100 shows the rise.
  result = lr_range_test(_loss_fn, jnp.zeros(D), data, max_lr=100.0)
  assert result.diverged_step is not None
  step = result.diverged_step
  assert len(result.learning_rates) == len(result.losses) == step + 1
  # The rule, recomputed: the lowest smoothed loss before divergence, a tenth
  # of its rate for L_max, 0.7 of that for L_min.
  best = np.argmin(result.losses[:step])
  assert result.min_loss_lr == result.learning_rates[best]
  np.testing.assert_allclose(result.suggested_max, 0.1 * result.min_loss_lr)
  np.testing.assert_allclose(result.suggested_min, 0.7 * result.suggested_max)
  assert 0.1 / beta < result.suggested_max < 3 / beta
  assert 0 < result.suggested_min < result.suggested_max


def test_full_batch_diverges_only_above_the_stability_edge(problem):
  x, y, beta = problem
  result = lr_range_test(_loss_fn, jnp.zeros(D), itertools.repeat((x, y)),
                         max_lr=100.0)
  rates, raw = result.learning_rates, result.raw_losses
  assert result.diverged_step is not None
  assert rates[result.diverged_step] >= 2 / beta
  # Below 2 / beta every step contracts every component: the raw loss never
  # rises (up to float32 rounding), so no early stop could have come there.
  # (The loss at step i + 1 is the first to see the rate of step i.)
  stable = np.flatnonzero(rates < 2 / beta)
  rises = np.diff(raw[:stable[-1] + 2])
  assert np.all(rises <= 1e-6 * raw[0])
  # The minimum is past the edge: the unstable direction takes steps to grow.
  assert result.min_loss_lr >= 2 / beta


def test_divergence_factor_controls_the_stop(problem):
  x, y, _ = problem
  early = lr_range_test(_loss_fn, jnp.zeros(D), itertools.repeat((x, y)),
                        max_lr=100.0, divergence_factor=1.5)
  late = lr_range_test(_loss_fn, jnp.zeros(D), itertools.repeat((x, y)),
                       max_lr=100.0, divergence_factor=100.0)
  assert early.diverged_step < late.diverged_step
  for result, factor in [(early, 1.5), (late, 100.0)]:
    step = result.diverged_step
    losses = result.losses
    assert losses[step] > factor * losses[:step].min()
    # No earlier step crossed the threshold of its own time.
    for i in range(1, step):
      assert losses[i] <= factor * losses[:i].min()


def test_nan_loss_stops_the_test_and_stays_out_of_the_suggestion():
  # A loss that turns NaN once |w| > 10: at rates past 2 (the curvature is 1)
  # the iterates grow until it does. The noisy targets keep the error from
  # settling at exactly 0; the huge divergence factor leaves the NaN as the
  # only stop.
  def loss_fn(w, target):
    loss = 0.5 * jnp.sum((w - target) ** 2)
    return jnp.where(jnp.max(jnp.abs(w)) > 10, jnp.nan, loss)

  rng = np.random.default_rng(0)
  targets = (1 + 0.1 * rng.normal(size=(100, 2))).astype(np.float32)
  result = lr_range_test(loss_fn, jnp.zeros(2), targets,
                         min_lr=1e-3, max_lr=100.0, num_steps=100,
                         divergence_factor=1e30)
  step = result.diverged_step
  assert step is not None and step == len(result.raw_losses) - 1
  assert np.isnan(result.raw_losses[step]) and np.isnan(result.losses[step])
  assert np.all(np.isfinite(result.raw_losses[:step]))
  assert result.learning_rates[step] > 2.0
  for value in (result.suggested_min, result.suggested_max,
                result.min_loss_lr):
    assert np.isfinite(value)
  best = np.nanargmin(result.losses)
  assert result.min_loss_lr == result.learning_rates[best]


def test_non_finite_starting_loss_raises():
  with pytest.raises(ValueError, match='lr_range_test: .*finite loss at the '
                     'starting parameters.*nan'):
    lr_range_test(lambda w, b: jnp.sum(w) * jnp.nan, jnp.ones(2),
                  itertools.repeat(None))


def test_a_short_iterator_stops_early_and_says_so(problem):
  x, y, _ = problem
  with pytest.warns(UserWarning, match=r'ran out after 7 of num_steps=20 '
                    r'steps, so the rates went only up to 0\.00712 of '
                    r'max_lr=0\.5'):
    result = lr_range_test(_loss_fn, jnp.zeros(D), [(x, y)] * 7,
                           min_lr=1e-3, max_lr=0.5, num_steps=20)
  assert result.diverged_step is None
  assert len(result.learning_rates) == len(result.losses) == 7
  assert len(result.raw_losses) == 7
  np.testing.assert_allclose(result.learning_rates,
                             _exponential_rates(1e-3, 0.5, 20)[:7])
  # Still falling at the last rate tried: that rate is the minimum.
  assert result.min_loss_lr == result.learning_rates[-1]


def test_no_batches_raises():
  with pytest.raises(ValueError,
                     match=r'lr_range_test: .*`batches`.*losses \[\]'):
    lr_range_test(_loss_fn, jnp.zeros(D), iter([]))


# --- suggest_bounds on hand-made curves ---------------------------------------


def test_suggest_bounds_on_a_valley():
  rates = np.geomspace(1e-4, 10, 51)
  # A smooth valley in log-rate with its bottom at rate 0.1 (index 30).
  losses = 1 + (np.log10(rates) + 1) ** 2
  assert rates[np.argmin(losses)] == pytest.approx(0.1)
  low, high = suggest_bounds(rates, losses)
  assert high == pytest.approx(0.01) and low == pytest.approx(0.007)
  low, high = suggest_bounds(rates, losses, max_fraction=1.0, min_fraction=0.5)
  assert high == pytest.approx(0.1) and low == pytest.approx(0.05)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_suggest_bounds_ignores_everything_after_a_non_finite_loss(bad):
  rates = np.array([0.01, 0.1, 1.0, 10.0, 100.0])
  # After the first non-finite point the curve no longer counts, even where
  # it is lower.
  losses = np.array([3.0, 2.0, bad, 0.5, 0.1])
  low, high = suggest_bounds(rates, losses)
  assert (low, high) == pytest.approx((0.007, 0.01))
  assert np.isfinite(low) and np.isfinite(high)


def test_suggest_bounds_minimum_at_the_last_point():
  rates = np.array([0.01, 0.1, 1.0])
  assert suggest_bounds(rates, np.array([3.0, 2.0, 1.0])) == pytest.approx(
      (0.07, 0.1))


@pytest.mark.parametrize(
    'rates, losses, kwargs, error, pattern',
    [
        ([0.1, 1.0], [np.nan, 1.0], {}, ValueError, 'first smoothed loss'),
        ([0.1, 1.0], [1.0], {}, ValueError, 'same length'),
        ([[0.1, 1.0]], [[1.0, 2.0]], {}, ValueError, '1-D'),
        ([0.1, 1.0], [1.0, 2.0], dict(max_fraction=0.0), ValueError,
         '`max_fraction`.*got 0.0'),
        ([0.1, 1.0], [1.0, 2.0], dict(max_fraction=1.5), ValueError,
         r'`max_fraction`.*\(0, 1\].*1.5'),
        ([0.1, 1.0], [1.0, 2.0], dict(min_fraction=-0.7), ValueError,
         '`min_fraction`.*-0.7'),
    ],
)
def test_suggest_bounds_rejects_bad_arguments(rates, losses, kwargs, error,
                                              pattern):
  with pytest.raises(error, match=f'suggest_bounds: .*{pattern}'):
    suggest_bounds(np.array(rates), np.array(losses), **kwargs)


# --- argument checks ---------------------------------------------------------


@pytest.mark.parametrize(
    'kwargs, error, pattern',
    [
        (dict(min_lr=0.0), ValueError, '`min_lr`.*min_lr=0.0'),
        (dict(min_lr=-1e-3), ValueError, '`min_lr`.*-0.001'),
        (dict(min_lr=float('nan')), ValueError, '`min_lr`.*nan'),
        (dict(max_lr=float('inf')), ValueError,
         '`min_lr` and `max_lr`.*max_lr=inf'),
        (dict(min_lr=1.0, max_lr=1.0), ValueError,
         '`min_lr` and `max_lr`.*min_lr < max_lr.*min_lr=1.0 and max_lr=1.0'),
        (dict(min_lr=1.0, max_lr=0.1), ValueError,
         '`min_lr` and `max_lr`.*max_lr=0.1'),
        (dict(num_steps=9), ValueError, r'`num_steps`.*\[10,.*got 9'),
        (dict(num_steps=100.5), ValueError, '`num_steps`.*100.5'),
        (dict(smoothing=0.0), ValueError, '`smoothing`.*got 0.0'),
        (dict(smoothing=1.0), ValueError, r'`smoothing`.*\(0, 1\).*1.0'),
        (dict(divergence_factor=1.0), ValueError,
         '`divergence_factor`.*> 1.*got 1.0'),
        (dict(divergence_factor=0.5), ValueError, '`divergence_factor`.*0.5'),
        (dict(max_fraction=2.0), ValueError, '`max_fraction`.*2.0'),
        (dict(min_fraction=0.0), ValueError, '`min_fraction`.*0.0'),
    ],
)
def test_lr_range_test_rejects_bad_arguments(problem, kwargs, error, pattern):
  x, y, _ = problem
  with pytest.raises(error, match=f'lr_range_test: {pattern}'):
    lr_range_test(_loss_fn, jnp.zeros(D), itertools.repeat((x, y)), **kwargs)

