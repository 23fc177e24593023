"""Two-regime training: one optimizer for large steps, another for small.

Leclerc and Madry, "The Two Regimes of Deep Network Training" (arXiv
2002.10376), separate a large-step regime (a large, roughly constant rate:
poor optimisation, but where generalisation comes from; momentum makes no
difference there once the rate is rescaled to lr / (1 - momentum)) from a
small-step regime (convex-like, fast to optimise, poor generalisation when
used alone), and propose an optimizer specialised to each. No official code
is public.
"""

from typing import Any, cast, NamedTuple

import jax
import jax.numpy as jnp
import optax

from plrs_jax import _validation


def strongly_typed(tree: Any) -> Any:
  """``tree`` with weakly typed arrays (from Python scalars) made strong.

  An update's output state has strong types (``lax.cond`` and ``jnp.where``
  drop weak types), so an initial state with weak leaves (optax's
  ``zeros_like`` of a parameter built from a Python float) would make a
  jitted step compile twice.
  """
  return jax.tree.map(
      lambda x: (jax.lax.convert_element_type(x, x.dtype)
                 if getattr(x, 'weak_type', False) else x), tree)


class TwoRegimeState(NamedTuple):
  """State of :func:`two_regime`.

  Attributes:
    count: updates taken so far, int32.
    regime: which optimizer made the last update, int32: 0 for
      ``large_step`` (also before any update), 1 for ``small_step``.
    large_step: the large-step optimizer's state (frozen after the switch).
    small_step: the small-step optimizer's state; built from the parameters
      at the switch, a placeholder of the right structure before it.
  """
  # Named as optax names its states' counters; it hides tuple.count, which
  # nothing calls on a state.
  count: jax.Array  # type: ignore[assignment]
  regime: jax.Array
  large_step: optax.OptState
  small_step: optax.OptState


def two_regime(
    large_step: optax.GradientTransformation,
    small_step: optax.GradientTransformation,
    switch_step: int,
) -> optax.GradientTransformationExtraArgs:
  """Runs ``large_step`` for ``switch_step`` updates, then ``small_step``.

  Update ``count`` (counted from 0) comes from ``large_step`` while
  ``count < switch_step`` and from ``small_step`` afterwards. ``small_step``'s
  state is initialised inside ``update`` at ``count == switch_step`` from the
  parameters passed to that update, so an optimizer whose state depends on the
  parameters' values starts from where the large-step regime ended; before
  the switch it is never updated. The large-step state is kept, untouched,
  after the switch. The switch is a ``lax.cond`` on the counter: one compiled
  update serves both regimes, under ``jit`` and ``pmap``. Extra keyword
  arguments of ``update`` (``value=``, ``loss=``...) reach both optimizers.

  Args:
    large_step: the optimizer of the large-step regime.
    small_step: the optimizer of the small-step regime.
    switch_step: the number of updates taken by ``large_step``; an int >= 0.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs
    ``params`` (the small-step optimizer is initialised from them).

  Example:
    >>> import jax.numpy as jnp, optax, plrs_jax
    >>> tx = plrs_jax.two_regime(optax.sgd(0.5), optax.sgd(0.1), switch_step=2)
    >>> params = jnp.zeros(1)
    >>> state = tx.init(params)
    >>> steps = []
    >>> for _ in range(4):
    ...   updates, state = tx.update(jnp.ones(1), state, params)
    ...   steps.append(round(float(updates[0]), 6))
    >>> steps
    [-0.5, -0.5, -0.1, -0.1]

  References:
    Leclerc and Madry, The Two Regimes of Deep Network Training, 2020.
    https://arxiv.org/abs/2002.10376
  """
  fn = 'two_regime'
  switch_step = _validation.check_int(fn, 'switch_step', switch_step,
                                      minimum=0)
  large_step = optax.with_extra_args_support(large_step)
  small_step = optax.with_extra_args_support(small_step)

  def init_fn(params: optax.Params) -> TwoRegimeState:
    return TwoRegimeState(
        count=jnp.zeros([], jnp.int32),
        regime=jnp.zeros([], jnp.int32),
        large_step=strongly_typed(large_step.init(params)),
        small_step=strongly_typed(small_step.init(params)))

  def update_fn(
      updates: optax.Updates,
      state: optax.OptState,
      params: optax.Params | None = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, TwoRegimeState]:
    state = cast(TwoRegimeState, state)
    if params is None:
      raise ValueError(
          f'{fn}: update needs `params`: the small-step optimizer is '
          'initialised from the parameters at the switch.')

    def large() -> tuple[optax.Updates, optax.OptState, optax.OptState]:
      new_updates, large_state = large_step.update(
          updates, state.large_step, params, **extra_args)
      return new_updates, large_state, state.small_step

    def small() -> tuple[optax.Updates, optax.OptState, optax.OptState]:
      small_state = jax.lax.cond(
          state.count == switch_step, lambda: small_step.init(params),
          lambda: state.small_step)
      new_updates, small_state = small_step.update(
          updates, small_state, params, **extra_args)
      return new_updates, state.large_step, small_state

    in_large = state.count < switch_step
    new_updates, large_state, small_state = jax.lax.cond(in_large, large,
                                                         small)
    return new_updates, TwoRegimeState(
        count=jnp.asarray(optax.safe_int32_increment(state.count)),
        regime=jnp.where(in_large, 0, 1).astype(jnp.int32),
        large_step=large_state, small_step=small_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def two_regime_sgd_adam(
    large_learning_rate: float | optax.Schedule,
    small_learning_rate: float,
    switch_step: int,
    *,
    weight_decay: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
  """Plain SGD at a large constant rate, then Adam at a small one.

  This is our reading of Leclerc and Madry's proposal (arXiv 2002.10376): the
  large-step regime needs no momentum (it only rescales the rate), so plain
  SGD at a constant rate; the small-step regime is convex-like, where an
  adaptive method optimises fast, so Adam (optax's defaults: b1 0.9, b2
  0.999, eps 1e-8) at a constant small rate, started fresh from the
  parameters at the switch. No official code is public; the rates and the
  switch are the problem's to choose, so there are no defaults.

  Departures and choices of ours: ``weight_decay`` (0 by default) is coupled,
  added to the gradient before either optimizer, as PyTorch's ``SGD`` and
  ``Adam`` do; the paper's experiments may tune it per regime.

  Args:
    large_learning_rate: SGD's rate before the switch, > 0; an optax
      schedule is accepted too (the paper's is constant).
    small_learning_rate: Adam's rate after the switch, > 0.
    switch_step: updates taken with SGD, an int >= 0.
    weight_decay: coupled L2 weight decay for both regimes, >= 0.

  Returns:
    A :func:`two_regime` transformation.

  Example:
    >>> import jax.numpy as jnp, plrs_jax
    >>> tx = plrs_jax.two_regime_sgd_adam(0.5, 0.01, switch_step=1)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> sgd_update, state = tx.update(jnp.array([1., -2.]), state, params)
    >>> adam_update, state = tx.update(jnp.array([1., -2.]), state, params)
    >>> [round(float(u), 5) for u in sgd_update]
    [-0.5, 1.0]
    >>> [round(float(u), 5) for u in adam_update]
    [-0.01, 0.01]
  """
  fn = 'two_regime_sgd_adam'
  _validation.check_value(fn, 'large_learning_rate', large_learning_rate,
                          allow_schedule=True, positive=True)
  _validation.check_value(fn, 'small_learning_rate', small_learning_rate,
                          positive=True)
  _validation.check_value(fn, 'weight_decay', weight_decay)
  large = optax.sgd(large_learning_rate)
  small = optax.adam(small_learning_rate)
  if weight_decay:
    large = optax.chain(optax.add_decayed_weights(weight_decay), large)
    small = optax.chain(optax.add_decayed_weights(weight_decay), small)
  return two_regime(large, small, switch_step)
