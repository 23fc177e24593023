"""AutoDrop: drop the learning rate when the angular velocity saturates.

Teng, Wang and Choromanska, "AutoDrop: Training Deep Learning Models with
Automatic Learning Rate Drop" (arXiv 2111.15317). Once per epoch the change of
the parameters over the epoch, s_e = x_e - x_{e-1}, is compared with the
previous one; the angle between them (the angular velocity) stops changing
when training has settled at the current rate, and then the rate is dropped.
Implemented here as the authors' official code runs it (github
yunfei-teng/AutoDrop, codes/models.py), with the departures listed in
:func:`scale_by_autodrop`.
"""

from typing import Any, cast, NamedTuple

import jax
import jax.numpy as jnp
import optax

from plrs_jax import _two_regime
from plrs_jax import _validation


class AutoDropState(NamedTuple):
  """State of :func:`scale_by_autodrop`; every scalar can be logged.

  Attributes:
    count: updates taken so far, int32.
    scale: the factor the updates are multiplied by (float32; 1 until the
      first drop).
    threshold: the current saturation threshold, in degrees (float32).
    angular_velocity: the latest angle between successive epoch
      displacements, in degrees (float32; NaN until epoch 3).
    saturated: whether saturation has been detected since the last drop.
    window_count: epochs accumulated in the average since saturation, k.
    num_drops: drops so far, int32.
    last_position: x_{e-1}, the parameters after the first update of the
      previous epoch.
    last_displacement: s_{e-1} = x_{e-1} - x_{e-2}.
    weighted_sum: the sum of k * x over the epochs since saturation.
  """
  # Named as optax names its states' counters; it hides tuple.count, which
  # nothing calls on a state.
  count: jax.Array  # type: ignore[assignment]
  scale: jax.Array
  threshold: jax.Array
  angular_velocity: jax.Array
  saturated: jax.Array
  window_count: jax.Array
  num_drops: jax.Array
  last_position: Any
  last_displacement: Any
  weighted_sum: Any


def _angle_degrees(a: optax.Updates, b: optax.Updates) -> jax.Array:
  """The angle between two pytrees seen as flat vectors, as the authors do.

  degrees(arccos(clip(<a, b> / (|a| |b| + 1e-8), -1, 1))).
  """
  cosine = optax.tree.vdot(a, b) / (
      optax.tree.norm(a) * optax.tree.norm(b) + 1e-8)
  return jnp.degrees(jnp.arccos(jnp.clip(cosine, -1.0, 1.0))).astype(
      jnp.float32)


def scale_by_autodrop(
    steps_per_epoch: int,
    *,
    drop_factor: float = 0.2,
    threshold: float = 0.01,
    max_threshold: float = 1.0,
    min_scale: float = 0.0,
    window_epochs: int = 20,
    average_weights: bool = True,
) -> optax.GradientTransformationExtraArgs:
  """Scales updates by AutoDrop's rate factor; chain it after an optimizer.

  What the official code does, per epoch of N steps (epochs and steps counted
  from 1; x is every parameter, flattened into one vector):

  1. x_e is the parameters after the epoch's first update.
  2. After the second update: s_e = x_e - x_{e-1} and the angular velocity
     ``w_e = degrees(arccos(clip(<s_e, s_{e-1}> / (|s_e| |s_{e-1}| + 1e-8),
     -1, 1)))``; the first w exists in epoch 3. From epoch 4,
     ``saturated |= |w_e - w_{e-1}| < threshold`` (strict; it latches).
  3. While saturated: k += 1 and a running sum adds k * x, x the parameters
     after this second update. When k == ``window_epochs`` (K): threshold <-
     min(threshold / drop_factor, max_threshold); scale <- max(drop_factor *
     scale, min_scale); with ``average_weights`` the parameters become sum /
     (K (K + 1) / 2); saturated and k reset. A drop comes K - 1 epochs after
     saturation is detected. The angle history is not reset.

  Here that point is update ``count`` with ``count % N == 1`` (counted from
  0): the incoming ``params`` are x_e and ``params + update`` the parameters
  after the second update. The second update is still scaled by the old
  scale; on a drop with averaging the emitted update is ``average - params``,
  which lands the parameters on the weighted average (up to one rounding of
  the subtraction and addition). Everything else passes through, scaled.

  Chained after ``optax.sgd(lr, momentum)`` this is the authors' rate change:
  optax's momentum accumulates raw gradients and is scaled afterwards, as
  PyTorch's ``SGD`` scales its buffer by the current ``lr``, so the momentum
  buffer is kept across a drop, as theirs is. Their BatchNorm statistics are
  not parameters and are not averaged or recomputed: pass only trainable
  parameters here (a Flax ``params`` collection does that).

  Departures from the official code: the last K snapshots are replaced by a
  running weighted sum (the same average, in another order of float32
  additions); the angle is computed in float32 as a sum over leaves rather
  than over one concatenated vector; their ``--auto_theta`` (raising the
  threshold on each drop) is always on, as in all their scripts: set
  ``max_threshold = threshold`` to keep it fixed; their clamp to
  [-1 + 1e-16, 1 - 1e-16] is [-1, 1] in float32; ``min_scale`` is relative
  to the optimizer's rate (their floor ``--lower_lr`` is absolute, see
  :func:`autodrop_sgd`).

  The official threshold of 0.01 degrees suits networks with millions of
  parameters, whose epoch displacements turn smoothly. On a small noisy
  problem (100-d least squares with minibatch noise) the angular velocity
  jumps by degrees from epoch to epoch and 0.01 never fires: use a larger
  threshold there (1.0 degree drops several times on such a problem).

  Args:
    steps_per_epoch: N, updates in one epoch; an int >= 2 (the angle is
      measured after an epoch's second update).
    drop_factor: the scale's multiplier at a drop, in (0, 1). 0.2 on CIFAR,
      0.1 on ImageNet in the authors' scripts.
    threshold: the initial saturation threshold in degrees, > 0.
    max_threshold: the cap of the threshold, which is divided by
      ``drop_factor`` at each drop; >= ``threshold``.
    min_scale: the floor of the scale, in [0, 1].
    window_epochs: K, epochs from saturation to the drop (counting the epoch
      saturation is detected in), an int >= 1. 20 in their scripts.
    average_weights: whether a drop moves the parameters to the K snapshots'
      average with weights 1..K (their ``--var_rd``, on in their scripts).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs
    ``params``.

  Example:
    >>> import jax.numpy as jnp, optax, plrs_jax
    >>> tx = optax.chain(optax.sgd(0.1, momentum=0.9),
    ...                  plrs_jax.scale_by_autodrop(steps_per_epoch=50))
    >>> params = jnp.zeros(3)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jnp.ones(3), state, params)
    >>> float(state[1].scale), round(float(state[1].threshold), 6)
    (1.0, 0.01)

  References:
    Teng, Wang and Choromanska, AutoDrop: Training Deep Learning Models with
    Automatic Learning Rate Drop, 2021. https://arxiv.org/abs/2111.15317
  """
  fn = 'scale_by_autodrop'
  steps_per_epoch = _validation.check_int(fn, 'steps_per_epoch',
                                          steps_per_epoch, minimum=2)
  if not 0 < drop_factor < 1:
    raise ValueError(f'{fn}: `drop_factor` must be in (0, 1), got '
                     f'{drop_factor!r}.')
  low = _validation.check_value(fn, 'threshold', threshold, positive=True)
  high = _validation.check_value(fn, 'max_threshold', max_threshold,
                                 positive=True)
  _validation.check_order(fn, 'threshold', low, 'max_threshold', high)
  if not 0 <= min_scale <= 1:
    raise ValueError(f'{fn}: `min_scale` must be in [0, 1], got '
                     f'{min_scale!r}.')
  window = _validation.check_int(fn, 'window_epochs', window_epochs, minimum=1)
  denominator = window * (window + 1) / 2

  def init_fn(params: optax.Params) -> AutoDropState:
    zeros = _two_regime.strongly_typed(jax.tree.map(jnp.zeros_like, params))
    return AutoDropState(
        count=jnp.zeros([], jnp.int32),
        scale=jnp.ones([], jnp.float32),
        threshold=jnp.asarray(threshold, jnp.float32),
        angular_velocity=jnp.full([], jnp.nan, jnp.float32),
        saturated=jnp.zeros([], bool),
        window_count=jnp.zeros([], jnp.int32),
        num_drops=jnp.zeros([], jnp.int32),
        last_position=zeros,
        last_displacement=zeros,
        weighted_sum=zeros)

  def measure(updates: optax.Updates, state: AutoDropState,
              params: optax.Params) -> tuple[optax.Updates, AutoDropState]:
    """The once-an-epoch step: angle, saturation, window and drop."""
    epoch = state.count // steps_per_epoch  # from 0: epoch 3 is 2 here
    displacement = optax.tree.sub(params, state.last_position)
    angle = _angle_degrees(displacement, state.last_displacement)
    angle = jnp.where(epoch >= 2, angle, jnp.nan)
    saturated = state.saturated | (
        (epoch >= 3)
        & (jnp.abs(angle - state.angular_velocity) < state.threshold))
    scaled = jax.tree.map(lambda u: state.scale.astype(u.dtype) * u, updates)
    after = optax.tree.add(params, scaled)
    k = state.window_count + saturated.astype(jnp.int32)
    weighted_sum = optax.tree.where(
        saturated, jax.tree.map(lambda total, x: total + k.astype(x.dtype) * x,
                                state.weighted_sum, after),
        state.weighted_sum)
    drop_now = k == window
    if average_weights:
      scaled = jax.tree.map(
          lambda u, total, p: jnp.where(
              drop_now, (total / jnp.asarray(denominator, total.dtype)) - p, u),
          scaled, weighted_sum, params)
    new_state = state._replace(
        scale=jnp.where(drop_now, jnp.maximum(drop_factor * state.scale,
                                              min_scale), state.scale),
        threshold=jnp.where(
            drop_now, jnp.minimum(state.threshold / drop_factor, max_threshold),
            state.threshold),
        angular_velocity=angle,
        saturated=saturated & ~drop_now,
        window_count=jnp.where(drop_now, 0, k),
        num_drops=state.num_drops + drop_now.astype(jnp.int32),
        last_position=params,
        last_displacement=displacement,
        weighted_sum=optax.tree.where(
            drop_now, optax.tree.zeros_like(weighted_sum), weighted_sum))
    return scaled, new_state

  def update_fn(
      updates: optax.Updates,
      state: optax.OptState,
      params: optax.Params | None = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, AutoDropState]:
    del extra_args
    state = cast(AutoDropState, state)
    if params is None:
      raise ValueError(f'{fn}: update needs `params`: the angular velocity is '
                       'measured on the parameters.')

    def scale_only(updates: optax.Updates, state: AutoDropState,
                   params: optax.Params
                   ) -> tuple[optax.Updates, AutoDropState]:
      del params
      return jax.tree.map(lambda u: state.scale.astype(u.dtype) * u,
                          updates), state

    new_updates, new_state = jax.lax.cond(
        state.count % steps_per_epoch == 1, measure, scale_only,
        updates, state, params)
    return new_updates, new_state._replace(
        count=jnp.asarray(optax.safe_int32_increment(state.count)))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def autodrop_sgd(
    learning_rate: float,
    steps_per_epoch: int,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    min_learning_rate: float = 1e-4,
    **autodrop_kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
  """The authors' AutoDrop recipe: SGD with momentum, then AutoDrop.

  As their scripts run it (github yunfei-teng/AutoDrop, ``*_cifar.sh``,
  ``resnet_imagenet.sh``): PyTorch SGD with momentum 0.9 and coupled weight
  decay (added to the gradient before momentum: 5e-4 on CIFAR, 1e-4 on
  ImageNet), Nesterov for their CIFAR ResNets (lr 0.05) and not for WRN (lr
  0.1) or ImageNet (lr 0.1), batch 128, then :func:`scale_by_autodrop` with
  threshold 0.01, max_threshold 1.0, K = 20, averaging on, and drop_factor
  0.2 (CIFAR) or 0.1 (ImageNet). Their absolute floor ``--lower_lr 1e-4``
  becomes ``min_scale = min_learning_rate / learning_rate``; this function's
  defaults are their CIFAR settings except ``nesterov`` and
  ``weight_decay``, which differ between their scripts.

  Args:
    learning_rate: the initial rate, > 0.
    steps_per_epoch: updates in one epoch, an int >= 2.
    momentum: SGD momentum in [0, 1); 0 for plain SGD.
    nesterov: Nesterov momentum.
    weight_decay: coupled L2 weight decay, >= 0.
    min_learning_rate: the rate's floor, in [0, learning_rate].
    **autodrop_kwargs: further arguments of :func:`scale_by_autodrop`
      (``drop_factor``, ``threshold``, ``max_threshold``, ``window_epochs``,
      ``average_weights``).

  Returns:
    The chained transformation; its last element's state is the
    :class:`AutoDropState`.

  Example:
    >>> import plrs_jax
    >>> tx = plrs_jax.autodrop_sgd(0.05, steps_per_epoch=390, nesterov=True,
    ...                            weight_decay=5e-4)
  """
  fn = 'autodrop_sgd'
  rate = _validation.check_value(fn, 'learning_rate', learning_rate,
                                 positive=True)
  if not 0 <= momentum < 1:
    raise ValueError(f'{fn}: `momentum` must be in [0, 1), got {momentum!r}.')
  _validation.check_value(fn, 'weight_decay', weight_decay)
  floor = _validation.check_value(fn, 'min_learning_rate', min_learning_rate)
  _validation.check_order(fn, 'min_learning_rate', floor, 'learning_rate', rate)
  autodrop = scale_by_autodrop(steps_per_epoch,
                               min_scale=min_learning_rate / learning_rate,
                               **autodrop_kwargs)
  sgd = optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)
  parts: list[optax.GradientTransformation] = [sgd, autodrop]
  if weight_decay:
    parts.insert(0, optax.add_decayed_weights(weight_decay))
  return optax.chain(*parts)
