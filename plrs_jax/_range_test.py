"""The learning-rate range test that picks PLRS's bounds L_min and L_max.

The paper (arXiv 2407.07613) chooses L_max "just below the rate where the
training loss starts to rise" in an LR range test (Smith, 2017), then L_min in
(0, L_max). :func:`lr_range_test` runs that test: a short training run whose
rate grows exponentially each step, recording the loss. :func:`suggest_bounds`
turns the recorded curve into a pair (L_min, L_max); it is a pure function on
arrays, so a curve recorded elsewhere can be read the same way.
"""

from collections.abc import Callable, Iterable
import math
from typing import Any, cast, NamedTuple
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from plrs_jax import _validation

__all__ = (
    'RangeTestResult',
    'lr_range_test',
    'suggest_bounds',
)

# Defaults of the suggestion rule, shared by both public functions.
_MAX_FRACTION = 0.1
_MIN_FRACTION = 0.7


class RangeTestResult(NamedTuple):
  """What :func:`lr_range_test` measured, and the bounds it suggests.

  The arrays hold one entry per step actually run: ``num_steps`` entries when
  the test ran to the end, fewer when it stopped at divergence (the diverging
  step included) or when the batches ran out.

  Attributes:
    learning_rates: float64 array, the rate of each step,
      ``min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))``.
    losses: float64 array, the smoothed (bias-corrected moving average) loss
      of each step.
    raw_losses: float64 array, the loss ``loss_fn(params, batch)`` of each
      step, evaluated before that step's update.
    diverged_step: the index of the step at which the test stopped for
      divergence, or None when it did not diverge.
    suggested_max: the suggested L_max (see :func:`suggest_bounds`).
    suggested_min: the suggested L_min.
    min_loss_lr: the rate at which the smoothed loss was lowest, over the
      steps before divergence.
  """

  learning_rates: np.ndarray
  losses: np.ndarray
  raw_losses: np.ndarray
  diverged_step: int | None
  suggested_max: float
  suggested_min: float
  min_loss_lr: float


def _check_fraction(fn: str, name: str, value: Any) -> float:
  if not 0 < value <= 1:  # NaN fails too
    raise ValueError(f'{fn}: `{name}` must be a number in (0, 1], got '
                     f'{value!r}.')
  return float(value)


def suggest_bounds(
    learning_rates: Any,
    smoothed_losses: Any,
    *,
    max_fraction: float = _MAX_FRACTION,
    min_fraction: float = _MIN_FRACTION,
) -> tuple[float, float]:
  r"""Suggests PLRS bounds (L_min, L_max) from a range-test loss curve.

  The rule:

  .. math::

    L_{max} = f_{max} \cdot \eta^\star,\qquad
    L_{min} = f_{min} \cdot L_{max},\qquad
    \eta^\star = \eta_{\arg\min_i \tilde\ell_i}

  where :math:`\tilde\ell_i` is the smoothed loss and the minimum runs over
  the points before the first non-finite loss, so a NaN never reaches the
  suggestion (:func:`lr_range_test` passes only the points before divergence).
  A minimum at the last point means the loss was still falling at the largest
  rate tried: the suggestion is then a lower bound on what the model
  tolerates, and a larger ``max_lr`` tells more. On a flat stretch the minimum
  may fall anywhere along it, which errs low.

  Why :math:`f_{max} = 0.1`: the paper takes L_max "just below the rate
  where the training loss starts to rise", and its Theorem 1 needs
  :math:`L_{max} < 1/\beta` (:math:`\beta` the smoothness, the top Hessian
  eigenvalue on a quadratic). The minimum of a range-test curve lags that
  rise: on a quadratic every rate below the stability edge :math:`2/\beta`
  lowers the loss, but above it the unstable direction grows from an error
  that earlier steps had shrunk, and the average lags further. Measured on
  least squares with known :math:`\beta` (default range 1e-5 to 10, 100 to
  200 steps), :math:`\eta^\star` fell at :math:`2.5/\beta` to
  :math:`4/\beta` with minibatches of 32, and at :math:`6/\beta` to
  :math:`17/\beta` full-batch (the slowest with exact targets, where the
  error shrinks furthest). One tenth of it -- Smith's and fastai's "an order
  of magnitude below the minimum" -- lands at :math:`0.25/\beta` to
  :math:`1.7/\beta`: around the theorem's bound, below the stability edge.
  A fraction of 0.3 would overshoot the edge full-batch.

  Why :math:`f_{min} = 0.7`: the paper's published pairs fix the ratio
  L_min / L_max:

  =====================================  =======  =======  =============
  experiment                             L_min    L_max    L_min / L_max
  =====================================  =======  =======  =============
  VGG-16, WRN-28-10, ResNet-110 (CIFAR)  0.07     0.1      0.7
  ResNet-50 (Tiny ImageNet)              0.35     0.4      0.875
  DenseNet-40-12 (CIFAR-100)             0.1      0.2      0.5
  =====================================  =======  =======  =============

  and 0.7 is the ratio of most of them.

  Args:
    learning_rates: 1-D array of the rates of the curve, increasing.
    smoothed_losses: 1-D array of the smoothed losses at those rates, of the
      same length. NaN or infinite values mark divergence: only the points
      before the first of them count.
    max_fraction: :math:`f_{max}`, a number in (0, 1].
    min_fraction: :math:`f_{min}`, a number in (0, 1].

  Returns:
    ``(suggested_min, suggested_max)`` as Python floats, always finite.

  Raises:
    TypeError: a fraction is not a number.
    ValueError: the arrays are not 1-D of equal length, a fraction is out of
      range, or the first loss is not finite (no point to choose from).

  Example:
    >>> import numpy as np
    >>> from plrs_jax import suggest_bounds
    >>> rates = np.array([0.01, 0.1, 1.0, 10.0])
    >>> losses = np.array([2.0, 1.0, 0.5, np.nan])  # lowest at rate 1.0
    >>> low, high = suggest_bounds(rates, losses)
    >>> round(low, 4), round(high, 4)
    (0.07, 0.1)
  """
  fn = 'suggest_bounds'
  max_fraction = _check_fraction(fn, 'max_fraction', max_fraction)
  min_fraction = _check_fraction(fn, 'min_fraction', min_fraction)
  rates = np.asarray(learning_rates, dtype=np.float64)
  losses = np.asarray(smoothed_losses, dtype=np.float64)
  if rates.ndim != 1 or losses.shape != rates.shape:
    raise ValueError(
        f'{fn}: `learning_rates` and `smoothed_losses` must be 1-D arrays of '
        f'the same length, got shapes {rates.shape} and {losses.shape}.')
  bad = ~np.isfinite(losses)
  # Only the points before the first non-finite loss: after it the run was no
  # longer training, and a NaN must never reach the suggestion.
  end = int(np.argmax(bad)) if bad.any() else losses.size
  if end == 0:
    raise ValueError(
        f'{fn}: the first smoothed loss must be finite, got '
        f'{losses[:1]!r}; no rate to suggest from.')
  best = int(np.argmin(losses[:end]))
  suggested_max = max_fraction * float(rates[best])
  return min_fraction * suggested_max, suggested_max


def lr_range_test(
    loss_fn: Callable[[Any, Any], jax.typing.ArrayLike],
    params: optax.Params,
    batches: Iterable[Any],
    *,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.05,
    divergence_factor: float = 4.0,
    optimizer: Callable[..., optax.GradientTransformation] | None = None,
    max_fraction: float = _MAX_FRACTION,
    min_fraction: float = _MIN_FRACTION,
) -> RangeTestResult:
  r"""Runs an LR range test and suggests PLRS bounds (L_min, L_max).

  Trains from ``params`` for up to ``num_steps`` steps, one batch per step,
  at the exponentially increasing rate

  .. math::

    \eta_i = \eta_{min} (\eta_{max} / \eta_{min})^{i / (n - 1)},
    \quad i = 0, \dots, n - 1,

  and records the loss :math:`\ell_i` of each step (evaluated before the
  step's update) and its smoothed value, the bias-corrected exponential
  moving average of Smith and fastai (:math:`b = 1 - \mathrm{smoothing}`):

  .. math::

    a_i = b\, a_{i-1} + (1 - b)\, \ell_i,\quad a_{-1} = 0,\qquad
    \tilde\ell_i = a_i / (1 - b^{i+1}).

  The test stops early, with ``diverged_step = i``, at the first step whose
  loss is not finite or whose smoothed loss exceeds ``divergence_factor``
  times the lowest smoothed loss so far; that step is the last one recorded.
  A non-finite loss never becomes the lowest. It also stops, without
  divergence, when ``batches`` runs out: the arrays are then shorter than
  ``num_steps``, and a warning says so. The bounds come from
  :func:`suggest_bounds` on the points before divergence: L_max =
  ``max_fraction`` times the rate of the lowest smoothed loss, L_min =
  ``min_fraction`` times L_max. Run it on minibatches of the training batch
  size: full-batch, the loss rises only far past the
  stability edge (see :func:`suggest_bounds`), and a ``max_lr`` that is too
  small then shows no rise at all.

  The step (loss, gradient, update) is one jitted function, compiled once: the
  rate reaches it as a traced argument through
  ``optax.inject_hyperparams``. A batch of a new shape or dtype compiles it
  again. The loss is read on the host after every step, to decide whether to
  stop. This function runs on the host: call it eagerly, not under ``jit``.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar loss``, differentiable in
      ``params`` and traceable by ``jax.jit``. The loss should be >= 0 (a
      cross-entropy, a squared error): divergence is judged by a ratio.
    params: the starting parameters, a pytree of float arrays; not modified.
    batches: an iterable of batches (pytrees of arrays), one per step. Pass
      ``itertools.repeat(batch)`` for full-batch training.
    min_lr: the first rate, a finite number > 0.
    max_lr: the last rate, a finite number > ``min_lr``.
    num_steps: number of steps (of rates), an int >= 10.
    smoothing: weight of the newest loss in the moving average, in (0, 1);
      ``b = 1 - smoothing``.
    divergence_factor: stop once the smoothed loss exceeds this many times
      the best so far; a finite number > 1.
    optimizer: a factory ``optimizer(learning_rate) -> GradientTransformation``
      such as ``optax.adam`` or ``functools.partial(optax.sgd, momentum=0.9)``,
      to test the optimizer the model will train with. Defaults to plain SGD
      (``optax.sgd``), the paper's optimizer.
    max_fraction: L_max as a fraction of the lowest-loss rate, in (0, 1].
    min_fraction: L_min as a fraction of L_max, in (0, 1].

  Returns:
    A :class:`RangeTestResult`.

  Raises:
    TypeError: an argument has the wrong type.
    ValueError: an argument is out of range, ``batches`` is empty, or the
      first loss (at the starting parameters) is not finite.

  Example:
    >>> import itertools
    >>> import jax.numpy as jnp, numpy as np
    >>> from plrs_jax import lr_range_test
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 4)).astype(np.float32)
    >>> y = x @ np.ones(4, np.float32) + rng.normal(scale=0.1, size=64)
    >>> def loss_fn(w, batch):
    ...   inputs, targets = batch
    ...   return jnp.mean((inputs @ w - targets) ** 2) / 2
    >>> result = lr_range_test(
    ...     loss_fn, jnp.zeros(4), itertools.repeat((x, y)),
    ...     min_lr=1e-3, max_lr=100.0, num_steps=50)
    >>> beta = np.linalg.eigvalsh(x.T @ x / 64).max()  # top curvature
    >>> result.diverged_step is not None  # it diverges above 2 / beta
    True
    >>> bool(result.learning_rates[result.diverged_step] > 2 / beta)
    True
    >>> bool(result.suggested_min < result.suggested_max < 2 / beta)
    True

  References:
    Smith, `Cyclical learning rates for training neural networks
    <https://arxiv.org/abs/1506.01186>`_, 2017.

    Devapriya, Tholeti, Suresh and Kalyani, `Probabilistic learning rate
    scheduler with provable convergence <https://arxiv.org/abs/2407.07613>`_,
    2024.
  """
  fn = 'lr_range_test'
  if not 0 < min_lr < max_lr < math.inf:
    raise ValueError(
        f'{fn}: `min_lr` and `max_lr` must be finite numbers with 0 < min_lr '
        f'< max_lr, got {min_lr=} and {max_lr=}.')
  low, high = float(min_lr), float(max_lr)
  num_steps = _validation.check_int(fn, 'num_steps', num_steps, minimum=10)
  if not 0 < smoothing < 1:
    raise ValueError(
        f'{fn}: `smoothing` must be a number in (0, 1), got {smoothing!r}.')
  if not 1 < divergence_factor < math.inf:
    raise ValueError(
        f'{fn}: `divergence_factor` must be a finite number > 1, got '
        f'{divergence_factor!r}.')
  max_fraction = _check_fraction(fn, 'max_fraction', max_fraction)
  min_fraction = _check_fraction(fn, 'min_fraction', min_fraction)
  if optimizer is None:
    optimizer = optax.sgd

  tx = optax.inject_hyperparams(optimizer)(learning_rate=low)
  opt_state = cast(optax.InjectStatefulHyperparamsState, tx.init(params))
  rate_dtype = jnp.asarray(opt_state.hyperparams['learning_rate']).dtype

  @jax.jit
  def step(
      params: optax.Params,
      opt_state: optax.InjectStatefulHyperparamsState,
      batch: Any,
      learning_rate: jax.Array,
  ) -> tuple[optax.Params, optax.OptState, jax.typing.ArrayLike]:
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    # The rate is an argument of the compiled step, written into the injected
    # hyperparameters: one compilation serves every rate.
    opt_state.hyperparams['learning_rate'] = learning_rate
    updates, new_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, loss

  # Rates in float64 on the host, as the formula gives them; each reaches the
  # step as a scalar of the optimizer's rate dtype, the same abstract value
  # every step.
  rates = low * (high / low) ** (np.arange(num_steps) / (num_steps - 1))
  beta = 1.0 - smoothing
  raw_losses, smoothed, average, best = [], [], 0.0, math.inf
  diverged_step = None
  batch_iter = iter(batches)
  for i in range(num_steps):
    try:
      batch = next(batch_iter)
    except StopIteration:
      break
    params, opt_state, loss = step(
        params, opt_state, batch, np.asarray(rates[i], rate_dtype))
    loss = float(loss)
    raw_losses.append(loss)
    if not math.isfinite(loss):
      smoothed.append(math.nan)
      diverged_step = i
      break
    average = beta * average + (1.0 - beta) * loss
    value = average / (1.0 - beta ** (i + 1))
    smoothed.append(value)
    if value > divergence_factor * best:
      diverged_step = i
      break
    best = min(best, value)
  if not raw_losses or not math.isfinite(raw_losses[0]):
    raise ValueError(
        f'{fn}: the range test needs a first batch from `batches` and a finite '
        'loss at the starting parameters (step 0, before any update), got '
        f'the losses {raw_losses}. Check loss_fn, params and the first batch.')
  if diverged_step is None and len(raw_losses) < num_steps:
    warnings.warn(
        f'{fn}: `batches` ran out after {len(raw_losses)} of '
        f'num_steps={num_steps} steps, so the rates went only up to '
        f'{rates[len(raw_losses) - 1]:.3g} of max_lr={high:g} and the '
        'suggestion comes from those steps alone; pass at least num_steps '
        'batches (itertools.cycle repeats a finite set).', stacklevel=2)
  rates = rates[:len(raw_losses)]
  losses = np.asarray(smoothed, dtype=np.float64)
  # Points before divergence only: the diverging point is excluded even when
  # its loss is finite.
  end = len(losses) if diverged_step is None else diverged_step
  suggested_min, suggested_max = suggest_bounds(
      rates[:end], losses[:end],
      max_fraction=max_fraction, min_fraction=min_fraction)
  min_loss_lr = float(rates[int(np.argmin(losses[:end]))])
  return RangeTestResult(
      learning_rates=rates,
      losses=losses,
      raw_losses=np.asarray(raw_losses, dtype=np.float64),
      diverged_step=diverged_step,
      suggested_max=suggested_max,
      suggested_min=suggested_min,
      min_loss_lr=min_loss_lr,
  )
