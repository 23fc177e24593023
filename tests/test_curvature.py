"""top_hessian_eigenvalue and check_bounds against numpy's eigensolver."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plrs_jax.curvature import check_bounds
from plrs_jax.curvature import top_hessian_eigenvalue


def _symmetric_matrix(eigenvalues, seed):
  """Q diag(eigenvalues) Q^T with a random orthogonal Q (float64)."""
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues),) * 2))
  return (q * eigenvalues) @ q.T


def _random_spectrum(size, seed):
  # A random spectrum in [0.1, 1] with its top eigenvalue pushed to 1.5: the
  # gap ratio |lambda_2 / lambda_1| <= 2/3 makes power iteration converge in
  # a few dozen steps.
  rng = np.random.default_rng(seed)
  spectrum = rng.uniform(0.1, 1.0, size=size)
  spectrum[rng.integers(size)] = 1.5
  return spectrum


def _quadratic(matrix):
  a = jnp.asarray(matrix, jnp.float32)
  return lambda x: 0.5 * x @ a @ x


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_quadratic_matches_eigvalsh(seed):
  matrix = _symmetric_matrix(_random_spectrum(20, seed), seed)
  eigenvalues, eigenvectors = np.linalg.eigh(matrix)
  result = top_hessian_eigenvalue(
      _quadratic(matrix), jnp.ones(20), key=jax.random.key(seed))
  assert result.converged
  assert 1 <= result.num_iterations < 100
  np.testing.assert_allclose(result.eigenvalue, eigenvalues.max(), rtol=1e-3)
  # The iterate is the top eigenvector, up to sign.
  vector = np.asarray(result.eigenvector, np.float64)
  np.testing.assert_allclose(np.linalg.norm(vector), 1.0, rtol=1e-5)
  assert abs(vector @ eigenvectors[:, -1]) > 0.999


def test_nested_pytree_gives_the_same_eigenvalue():
  matrix = _symmetric_matrix(_random_spectrum(17, 3), 3)
  quadratic = _quadratic(matrix)

  def loss_fn(params):
    # The loss fixes its own order of the 17 coordinates, independent of how
    # the library flattens the pytree.
    x = jnp.concatenate([params['b'].ravel(), params['a']['w'].ravel()])
    return quadratic(x)

  params = {'a': {'w': jnp.ones((3, 4))}, 'b': jnp.ones(5)}
  result = top_hessian_eigenvalue(loss_fn, params, key=7)
  flat = top_hessian_eigenvalue(quadratic, jnp.ones(17), key=7)
  expected = np.linalg.eigvalsh(matrix).max()
  np.testing.assert_allclose(result.eigenvalue, expected, rtol=1e-3)
  np.testing.assert_allclose(result.eigenvalue, flat.eigenvalue, rtol=1e-3)
  assert jax.tree.structure(result.eigenvector) == jax.tree.structure(params)
  assert result.eigenvector['a']['w'].shape == (3, 4)
  assert result.eigenvector['b'].shape == (5,)


def test_least_squares_beta_is_top_eigenvalue_of_gram_matrix():
  rng = np.random.default_rng(0)
  n, d = 200, 6
  x = rng.normal(size=(n, d)) * np.array([3.0, 1, 1, 1, 1, 1])
  y = rng.normal(size=n)
  xs, ys = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

  def loss_fn(params):
    return jnp.sum((xs @ params['w'] + params['b'] - ys) ** 2) / (2 * n)

  # The bias is a column of ones: the Hessian is [X 1]^T [X 1] / n.
  design = np.hstack([x, np.ones((n, 1))])
  beta = np.linalg.eigvalsh(design.T @ design / n).max()
  result = top_hessian_eigenvalue(
      loss_fn, {'w': jnp.zeros(d), 'b': jnp.zeros(())}, key=0,
      tolerance=1e-6)
  assert result.converged
  np.testing.assert_allclose(result.eigenvalue, beta, rtol=1e-3)

  def weights_only(w):
    return jnp.sum((xs @ w - ys) ** 2) / (2 * n)

  result = top_hessian_eigenvalue(weights_only, jnp.zeros(d), key=0)
  np.testing.assert_allclose(
      result.eigenvalue, np.linalg.eigvalsh(x.T @ x / n).max(), rtol=1e-3)


def test_finds_the_eigenvalue_of_largest_magnitude():
  # Spectrum {1, 0.5, -3}: power iteration returns -3, as documented.
  matrix = _symmetric_matrix(np.array([1.0, 0.5, -3.0]), 4)
  result = top_hessian_eigenvalue(_quadratic(matrix), jnp.ones(3), key=1,
                                  which='magnitude')
  np.testing.assert_allclose(result.eigenvalue, -3.0, rtol=1e-3)


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('spectrum', [
    [1.0, 0.5, -3.0],            # a saddle: the negative one dominates
    [5.0, 1.0, -30.8, -2.0, 0.1],  # like a network at initialisation
    [-1.0, -2.0, -4.0],          # a maximum: the largest is the least negative
    [2.0, 1.0, 0.5],             # convex: the two agree
])
def test_largest_is_the_most_positive_eigenvalue(spectrum, seed):
  spectrum = np.array(spectrum)
  matrix = _symmetric_matrix(spectrum, seed)
  result = top_hessian_eigenvalue(_quadratic(matrix), jnp.ones(len(spectrum)),
                                  key=seed, num_iterations=2000,
                                  tolerance=1e-7)
  # numpy's eigvalsh of the same matrix, float64; power iteration in float32
  # stops at a relative change of 1e-7, well within 1e-3.
  expected = np.linalg.eigvalsh(matrix).max()
  np.testing.assert_allclose(result.eigenvalue, expected, rtol=1e-3,
                             atol=1e-4)
  assert result.converged
  np.testing.assert_allclose(result.eigenvalue, spectrum.max(), rtol=1e-3,
                             atol=1e-4)


def test_curvature_at_a_point_of_a_non_quadratic_loss():
  # sum(cosh(x)) has Hessian diag(cosh(x)).
  point = jnp.array([0.0, 1.0, 2.0, -0.5])
  result = top_hessian_eigenvalue(lambda x: jnp.sum(jnp.cosh(x)), point, key=0)
  np.testing.assert_allclose(result.eigenvalue, np.cosh(2.0), rtol=1e-3)


def test_a_flat_loss_has_eigenvalue_zero():
  result = top_hessian_eigenvalue(lambda x: jnp.sum(3 * x), jnp.ones(4), key=0)
  assert result.eigenvalue == 0.0
  assert result.converged
  assert np.all(np.isfinite(result.eigenvector))


def test_stops_at_num_iterations():
  matrix = _symmetric_matrix(_random_spectrum(20, 0), 0)
  result = top_hessian_eigenvalue(
      _quadratic(matrix), jnp.ones(20), key=0, num_iterations=2)
  assert result.num_iterations == 2
  assert not result.converged


def test_key_forms_agree_and_keys_differ():
  matrix = _symmetric_matrix(_random_spectrum(20, 5), 5)
  loss_fn = _quadratic(matrix)
  runs = [
      top_hessian_eigenvalue(loss_fn, jnp.ones(20), key=key,
                             num_iterations=3)
      for key in (3, jax.random.key(3), jax.random.PRNGKey(3))
  ]
  assert runs[0].eigenvalue == runs[1].eigenvalue == runs[2].eigenvalue
  other = top_hessian_eigenvalue(loss_fn, jnp.ones(20), key=4,
                                 num_iterations=3)
  assert other.eigenvalue != runs[0].eigenvalue


def test_compiles_once_per_loss_fn():
  traces = []
  matrix = jnp.asarray(
      _symmetric_matrix(_random_spectrum(8, 6), 6), jnp.float32)

  def loss_fn(x):
    traces.append(None)  # runs only while JAX traces
    return 0.5 * x @ matrix @ x

  for key, iterations, tolerance in [(0, 100, 1e-4), (1, 50, 1e-5)]:
    top_hessian_eigenvalue(loss_fn, jnp.ones(8), key=key,
                           num_iterations=iterations, tolerance=tolerance)
  assert len(traces) == 1


def test_half_precision_params():
  matrix = _symmetric_matrix(_random_spectrum(10, 8), 8)
  result = top_hessian_eigenvalue(
      lambda x: _quadratic(matrix)(x.astype(jnp.float32)),
      jnp.ones(10, jnp.bfloat16), key=0)
  np.testing.assert_allclose(
      result.eigenvalue, np.linalg.eigvalsh(matrix).max(), rtol=1e-3)


@pytest.mark.parametrize(
    'kwargs, error, pattern',
    [
        (dict(num_iterations=0), ValueError, r'`num_iterations`.*\[1,.*got 0'),
        (dict(num_iterations=10.0), ValueError, '`num_iterations`.*10.0'),
        (dict(tolerance=0.0), ValueError, '`tolerance`.*> 0.*got 0.0'),
        (dict(tolerance=-1e-3), ValueError, '`tolerance`.*-0.001'),
        (dict(tolerance=float('nan')), ValueError, '`tolerance`.*nan'),
        (dict(key=jax.random.split(jax.random.key(0), 2)), ValueError,
         '`key`.*batch of keys'),
        (dict(params={}), ValueError, '`params`.*at least one'),
    ],
)
def test_top_hessian_eigenvalue_rejects_bad_arguments(kwargs, error, pattern):
  arguments = dict(loss_fn=lambda x: jnp.sum(x**2), params=jnp.ones(3), key=0)
  arguments.update(kwargs)
  with pytest.raises(error, match=f'top_hessian_eigenvalue: {pattern}'):
    top_hessian_eigenvalue(
        arguments.pop('loss_fn'), arguments.pop('params'), **arguments)


# beta = 4: 1/beta = 0.25 and 2/beta = 0.5 are exact in binary, so the table
# holds at the boundaries too.
@pytest.mark.parametrize(
    'max_value, below_theorem, below_edge, phrase',
    [
        (0.0, True, True, 'is below 1/beta = 0.25'),
        (0.1, True, True, 'is below 1/beta = 0.25'),
        (0.2499, True, True, 'is below 1/beta = 0.25'),
        (0.25, False, True, 'at or above 1/beta = 0.25 but below 2/beta = 0.5'),
        (0.4, False, True, 'at or above 1/beta = 0.25 but below 2/beta = 0.5'),
        (0.5, False, False, 'equals 2/beta = 0.5'),
        (0.6, False, False, 'is above 2/beta = 0.5: gradient descent at this '
         'rate diverges'),
    ],
)
def test_check_bounds_truth_table(max_value, below_theorem, below_edge, phrase):
  beta = 4.0
  check = check_bounds(max_value, beta)
  assert check.below_theorem_bound is (max_value < 1 / beta) is below_theorem
  assert check.below_stability_edge is (max_value < 2 / beta) is below_edge
  assert check.max_value == max_value and check.beta == beta
  assert phrase in check.explanation
  assert check.explanation.startswith(f'L_max = {max_value:.4g} ')


def test_check_bounds_with_a_measured_beta():
  # The paper's CIFAR pair: L_max = 0.1 against a measured beta.
  matrix = _symmetric_matrix(_random_spectrum(20, 9), 9) * 4.0  # beta = 6
  beta = top_hessian_eigenvalue(_quadratic(matrix), jnp.ones(20), key=0)
  check = check_bounds(0.1, beta.eigenvalue)
  assert check.below_theorem_bound and check.below_stability_edge
  assert not check_bounds(0.2, beta.eigenvalue).below_theorem_bound  # 1/6
  assert check_bounds(0.2, beta.eigenvalue).below_stability_edge  # 2/6
  assert not check_bounds(0.34, beta.eigenvalue).below_stability_edge


@pytest.mark.parametrize(
    'max_value, beta, error, pattern',
    [
        (0.1, 0.0, ValueError, '`beta`.*> 0.*got 0.0.*no positive curvature'),
        (0.1, -2.0, ValueError, '`beta`.*got -2.0.*no positive curvature'),
        (0.1, float('nan'), ValueError, '`beta`.*got nan'),
        (0.1, float('inf'), ValueError, '`beta`.*got inf'),
        (-0.1, 1.0, ValueError, '`max_value`.*>= 0.*got -0.1'),
        (float('inf'), 1.0, ValueError, '`max_value`.*got inf'),
    ],
)
def test_check_bounds_rejects_bad_arguments(max_value, beta, error, pattern):
  with pytest.raises(error, match=f'check_bounds: {pattern}'):
    check_bounds(max_value, beta)
