"""Top Hessian eigenvalue, and the paper's conditions on L_max.

The convergence theorem of PLRS (arXiv 2407.07613, Theorem 1) asks for
``L_max < 1/beta``, beta the smoothness constant of the loss: the largest
eigenvalue of its Hessian. :func:`top_hessian_eigenvalue` estimates it at given
parameters by power iteration on Hessian-vector products, and
:func:`check_bounds` compares a candidate L_max against ``1/beta`` and against
``2/beta``, the rate above which gradient descent diverges along the top
curvature direction.
"""

from collections.abc import Callable
import functools
import math
from typing import Any, NamedTuple

import chex
import jax
from jax import flatten_util
import jax.numpy as jnp

from plrs_jax import _validation

__all__ = (
    'BoundsCheck',
    'EigenvalueResult',
    'check_bounds',
    'top_hessian_eigenvalue',
)


class EigenvalueResult(NamedTuple):
  """The outcome of :func:`top_hessian_eigenvalue`.

  Attributes:
    eigenvalue: the Rayleigh quotient ``v^T H v`` at the last iterate, the
      estimate of the eigenvalue of largest magnitude, a Python float.
    eigenvector: the last iterate ``v``, a pytree shaped like ``params`` with
      unit norm over all its leaves together.
    num_iterations: Hessian-vector products computed, an int.
    converged: whether the relative change of the estimate fell below
      ``tolerance`` before ``num_iterations`` ran out.
  """

  eigenvalue: float
  eigenvector: chex.ArrayTree
  num_iterations: int
  converged: bool


class _LoopState(NamedTuple):
  iteration: jax.Array
  vector: jax.Array
  eigenvalue: jax.Array
  converged: jax.Array


@functools.partial(jax.jit, static_argnames=('loss_fn',))
def _power_iteration(
    loss_fn: Callable[[Any], jax.typing.ArrayLike],
    params: chex.ArrayTree,
    key: jax.Array,
    num_iterations: int,
    tolerance: float,
    shift: jax.Array,
) -> _LoopState:
  """Power iteration on v -> (H - shift I) v, in one compiled while loop.

  The estimate is the Rayleigh quotient of H itself, v^T H v: the shift only
  changes which eigenvector the iteration converges to.
  """
  flat, unravel = flatten_util.ravel_pytree(params)
  # Iterate in at least float32: half-precision parameters keep their dtype
  # inside loss_fn (unravel casts back), the iteration does not lose digits.
  flat = flat.astype(jnp.promote_types(flat.dtype, jnp.float32))
  grad_fn = jax.grad(lambda x: loss_fn(unravel(x)))

  def hvp(v: jax.Array) -> jax.Array:
    # Forward-over-reverse: one jvp of the gradient, no Hessian is formed.
    return jax.jvp(grad_fn, (flat,), (v,))[1]

  def normalize(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    norm = jnp.linalg.norm(v)
    return v / jnp.where(norm > 0, norm, 1), norm

  def cond(state: _LoopState) -> jax.Array:
    return (state.iteration < num_iterations) & ~state.converged

  def body(state: _LoopState) -> _LoopState:
    hv = hvp(state.vector)
    eigenvalue = jnp.vdot(state.vector, hv)  # Rayleigh quotient, |v| = 1
    vector, norm = normalize(hv - shift * state.vector)
    change = jnp.abs(eigenvalue - state.eigenvalue)
    # H v = 0 means v lies in the null space: the estimate 0 is final there
    # (and v is kept rather than divided by zero).
    converged = (change <= tolerance * jnp.abs(eigenvalue)) | (norm == 0)
    vector = jnp.where(norm > 0, vector, state.vector)
    return _LoopState(state.iteration + 1, vector, eigenvalue, converged)

  start, _ = normalize(jax.random.normal(key, flat.shape, flat.dtype))
  state = _LoopState(
      iteration=jnp.zeros((), jnp.int32),
      vector=start,
      # NaN: the first comparison is never "converged".
      eigenvalue=jnp.full((), jnp.nan, flat.dtype),
      converged=jnp.zeros((), bool),
  )
  state = jax.lax.while_loop(cond, body, state)
  return state._replace(vector=unravel(state.vector))


def top_hessian_eigenvalue(
    loss_fn: Callable[[Any], jax.typing.ArrayLike],
    params: chex.ArrayTree,
    *,
    key: Any,
    num_iterations: int = 100,
    tolerance: float = 1e-4,
    which: str = 'largest',
) -> EigenvalueResult:
  r"""Estimates the top Hessian eigenvalue of ``loss_fn`` at ``params``.

  Power iteration on the Hessian :math:`H = \nabla^2 \ell(\theta)`, never
  formed: each step takes one Hessian-vector product, computed
  forward-over-reverse as ``jax.jvp(jax.grad(loss_fn), (params,), (v,))``,

  .. math::

    \lambda_k = v_k^\top H v_k,\qquad
    v_{k+1} = H v_k / \lVert H v_k \rVert,

  from a random unit :math:`v_0` drawn from ``key``. It stops once
  :math:`|\lambda_k - \lambda_{k-1}| \le \mathrm{tolerance} \cdot |\lambda_k|`
  or after ``num_iterations`` products. The loop is one ``jax.lax.while_loop``
  in one compiled program (cached per ``loss_fn`` and parameter structure);
  ``params`` may be any pytree of float arrays, treated as one flat vector.

  Power iteration finds the eigenvalue of largest *magnitude*
  (``which='magnitude'``), the spectral norm of the Hessian up to its sign.
  Near a saddle, as at a network's initialisation, that is often a negative
  eigenvalue, which says nothing about the rates gradient descent can take:
  along a direction of negative curvature it moves away at any rate. The rate
  limit ``2/lambda`` comes from the most positive eigenvalue, which
  ``which='largest'`` (the default) finds: when the first iteration returns a
  negative :math:`\lambda_m`, a second one runs on :math:`H - \lambda_m I`,
  whose eigenvalues :math:`\lambda - \lambda_m \ge 0` have the largest
  eigenvalue of :math:`H` on top. Convergence is geometric in the ratio of the
  two leading eigenvalues (of the shifted matrix for the second run); with
  two of nearly equal size it is slow and ``converged`` may come back False.

  The value is local: the Hessian at ``params`` on the data ``loss_fn`` closes
  over. The paper's beta bounds the curvature everywhere, so it is at least
  this value.

  Args:
    loss_fn: ``loss_fn(params) -> scalar``, twice differentiable and
      traceable by ``jax.jit``; close over the batch.
    params: the point, a pytree of float arrays.
    key: a typed key (``jax.random.key(seed)``), a legacy uint32 key
      (``jax.random.PRNGKey(seed)``) or an int seed, for the start vector.
    num_iterations: most Hessian-vector products to compute, an int >= 1.
    tolerance: relative change of the estimate at which to stop, a finite
      number > 0.
    which: ``'largest'`` for the most positive eigenvalue (the curvature that
      limits the rate), or ``'magnitude'`` for the eigenvalue of largest
      magnitude (the spectral norm, with its sign). ``num_iterations`` bounds
      each of the (at most two) power iterations.

  Returns:
    An :class:`EigenvalueResult`, with Python scalars.

  Raises:
    TypeError: an argument has the wrong type, or ``params`` holds no float
      arrays.
    ValueError: an argument is out of range, or ``params`` is empty.

  Example:
    >>> import jax.numpy as jnp
    >>> from plrs_jax.curvature import top_hessian_eigenvalue
    >>> scales = jnp.array([1.0, 2.0, 5.0])
    >>> loss_fn = lambda p: 0.5 * jnp.sum(scales * p['w'] ** 2)
    >>> result = top_hessian_eigenvalue(loss_fn, {'w': jnp.ones(3)}, key=0)
    >>> round(result.eigenvalue, 3), result.converged
    (5.0, True)

  References:
    Yao, Gholami, Keutzer and Mahoney, `PyHessian: neural networks through
    the lens of the Hessian <https://arxiv.org/abs/1912.07145>`_, 2020.
  """
  fn = 'top_hessian_eigenvalue'
  key = _validation.canonicalize_key(fn, key)
  num_iterations = _validation.check_int(
      fn, 'num_iterations', num_iterations, minimum=1)
  if not 0 < tolerance < math.inf:
    raise ValueError(
        f'{fn}: `tolerance` must be a finite number > 0, got {tolerance!r}.')
  if which not in ('largest', 'magnitude'):
    raise ValueError(
        f"{fn}: `which` must be 'largest' or 'magnitude', got {which!r}.")
  # No numbers would give the estimate 0 as if converged.
  if flatten_util.ravel_pytree(params)[0].size == 0:
    raise ValueError(f'{fn}: `params` must hold at least one number, got '
                     f'{params!r}.')
  state = _power_iteration(loss_fn, params, key, num_iterations,
                           float(tolerance), jnp.float32(0))
  iterations = int(state.iteration)
  if which == 'largest' and float(state.eigenvalue) < 0:
    # Every eigenvalue of H - lambda_m I is >= 0; the top one is
    # lambda_max - lambda_m, and its eigenvector is lambda_max's.
    state = _power_iteration(loss_fn, params, key, num_iterations,
                             float(tolerance), state.eigenvalue)
    iterations += int(state.iteration)
  return EigenvalueResult(
      eigenvalue=float(state.eigenvalue),
      eigenvector=state.vector,
      num_iterations=iterations,
      converged=bool(state.converged),
  )


class BoundsCheck(NamedTuple):
  """How a candidate L_max compares with the curvature (see check_bounds).

  Attributes:
    max_value: the candidate L_max.
    beta: the top Hessian eigenvalue it was compared with.
    below_theorem_bound: ``max_value < 1 / beta``, the condition of the
      paper's Theorem 1.
    below_stability_edge: ``max_value < 2 / beta``: gradient descent at this
      rate contracts along the top curvature direction.
    explanation: one sentence saying which holds.
  """

  max_value: float
  beta: float
  below_theorem_bound: bool
  below_stability_edge: bool
  explanation: str


def check_bounds(max_value: float, beta: float) -> BoundsCheck:
  r"""Compares a PLRS upper bound L_max with the curvature beta.

  Two thresholds matter. The paper's Theorem 1 proves convergence of
  SGD-PLRS for :math:`L_{max} < 1/\beta`. Beyond that, gradient descent at a
  rate :math:`\eta` multiplies the error along the top eigenvector by
  :math:`1 - \eta\beta` each step: it contracts for :math:`\eta < 2/\beta`,
  oscillates at :math:`2/\beta`, and diverges above. PLRS draws rates up to
  L_max, so L_max is the rate to check.

  ``beta`` is usually :func:`top_hessian_eigenvalue` at the starting or
  current parameters. That is a local value: the global smoothness is at least
  as large, so ``below_theorem_bound`` is necessary for the theorem's
  condition, not sufficient.

  ``beta`` should be the most positive eigenvalue (``which='largest'``, the
  default of :func:`top_hessian_eigenvalue`): only positive curvature limits
  the rate. A ``beta <= 0`` is refused rather than read as "every L_max is
  fine": it means the loss has no positive curvature there (a maximum, or a
  flat loss), or a largest-magnitude eigenvalue that is negative was passed,
  and neither bound is defined.

  Args:
    max_value: the candidate L_max, a finite number >= 0.
    beta: the top Hessian eigenvalue, a finite number > 0.

  Returns:
    A :class:`BoundsCheck`.

  Raises:
    TypeError: an argument is not a number.
    ValueError: an argument is out of range: ``max_value`` negative or not
      finite, ``beta`` not finite or ``<= 0``.

  Example:
    >>> from plrs_jax.curvature import check_bounds
    >>> check = check_bounds(0.1, beta=2.0)
    >>> check.below_theorem_bound, check.below_stability_edge
    (True, True)
    >>> print(check.explanation)
    L_max = 0.1 is below 1/beta = 0.5: the paper's convergence condition holds.
    >>> check_bounds(1.5, beta=2.0).below_stability_edge
    False
  """
  fn = 'check_bounds'
  if not 0 <= max_value < math.inf:
    raise ValueError(
        f'{fn}: `max_value` must be a finite number >= 0, got {max_value!r}.')
  if not 0 < beta < math.inf:
    raise ValueError(
        f'{fn}: `beta` must be a finite number > 0, got {beta!r}. A top '
        'Hessian eigenvalue <= 0 means no positive curvature there (or a '
        'negative largest-magnitude eigenvalue was passed: use '
        "top_hessian_eigenvalue(..., which='largest')): 1/beta and 2/beta are "
        'undefined.')
  high, curvature = float(max_value), float(beta)
  theorem, edge = 1 / curvature, 2 / curvature
  below_theorem = high < theorem
  below_edge = high < edge
  prefix = f'L_max = {high:.4g}'
  if below_theorem:
    explanation = (f"{prefix} is below 1/beta = {theorem:.4g}: the paper's "
                   'convergence condition holds.')
  elif below_edge:
    explanation = (
        f'{prefix} is at or above 1/beta = {theorem:.4g} but below 2/beta = '
        f"{edge:.4g}: gradient descent at this rate still converges, but the "
        "paper's convergence condition does not hold.")
  elif high == edge:
    explanation = (
        f'{prefix} equals 2/beta = {edge:.4g}: gradient descent at this rate '
        'oscillates along the top curvature direction without converging.')
  else:
    explanation = (
        f'{prefix} is above 2/beta = {edge:.4g}: gradient descent at this rate '
        'diverges along the top curvature direction.')
  return BoundsCheck(
      max_value=high,
      beta=curvature,
      below_theorem_bound=below_theorem,
      below_stability_edge=below_edge,
      explanation=explanation,
  )
