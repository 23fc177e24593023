"""MLR-SNet: a small LSTM that maps the training loss to the learning rate.

Shu, Zhu, Zhao, Meng and Xu, "MLR-SNet: Transferable LR Schedules for
Heterogeneous Tasks" (arXiv 2007.14546; official PyTorch code github
xjtushujun/MLR-SNet, MIT). At every step the mini-batch training loss L_t,
taken before the update, enters one LSTM cell (hidden size 50) whose state is
carried across steps; a linear head and a sigmoid turn the hidden state into
a fraction of gamma:

    (h_t, c_t) = cell(L_t, (h_{t-1}, c_{t-1})),   (h_0, c_0) = 0
    alpha_t = gamma * sigmoid(w . h_t + b)
    gamma = sqrt(L_0) * ln(L_0 * C) / C**(1/4) / 4

with L_0 the mean training loss at initialisation and C the number of
classes. The cell's input-to-hidden and hidden-to-hidden maps are small MLPs,
Linear(1, 25) -> ReLU -> Linear(25, 200) and Linear(50, 25) -> ReLU ->
Linear(25, 200); their sum holds the four gates.

Gate order. The official meta-training cell (meta-train/.../module.py) splits
the 200 pre-activations as [input, forget, output, cell input] and offsets
the forget gate, sigmoid(f - 1); the meta-test cell (meta-test/model/
network.py) splits them as [input, forget, cell input, output] with no
offset. Both name their parameters alike, so the meta-test code loads weights
learnt by the meta-training cell into a cell that reads them differently.
Here the order is the meta-training one, [i, f, o, g] with sigmoid(f - 1):
the parameters are learnt in that cell, so meta-training here and the
transfer of what it learnt use one cell. Fed the per-epoch training losses of
their ResNet/CIFAR-10 meta-training record, the published snapshots give
rates of about 0.02 over the last two thirds of a run in this cell, as their
meta-training run's own rates (0.016 to 0.03), and about 0.001 in the
meta-test cell.

Initialisation. Every Linear starts as PyTorch's default does: weights and
biases uniform in +-1/sqrt(fan_in). The official cell has an ``init_weights``
that would draw weights in +-0.1, but it only touches layers whose type is
exactly ``MetaLinear`` while its MLPs are ``nn.Linear``, so it changes
nothing; the head, a ``MetaLinear``, copies a default ``nn.Linear``. (The
published snapshots do not come from that code: after one meta-epoch their
head bias is 0.998, outside the default bound 1/sqrt(50) = 0.14.)

Meta-training is first order: the carried state is not differentiated
through time, and once every ``t_val`` steps one SGD step of the model is
differentiated with respect to the net's parameters only
(:func:`mlr_snet_meta_loss`).
"""

from collections.abc import Callable, Mapping, Sequence
import itertools
import math
from typing import Any, cast, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from plrs_jax import _validation

__all__ = (
    'MLRSNetState',
    'mlr_snet',
    'mlr_snet_cell',
    'mlr_snet_gamma',
    'mlr_snet_init',
    'mlr_snet_meta_loss',
)


# The paper's and the official code's hidden size, used by every function.
_HIDDEN_SIZE = 50


# The net's parameters: a kernel and a bias for each layer, by name.
_Params = Mapping[str, Mapping[str, jax.Array]]

# Each layer's (fan_in, outputs): the MLPs' hidden layers have half as many
# units as h, their outputs hold h's four gates.
_LAYERS = {'i2h_hidden': (1, 25), 'i2h_gates': (25, 200),
           'h2h_hidden': (50, 25), 'h2h_gates': (25, 200), 'head': (50, 1)}


def _dense(layer: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
  return x @ layer['kernel'] + layer['bias']


def mlr_snet_cell(
    params: _Params,
    carry: tuple[jax.Array, jax.Array],
    loss: jax.typing.ArrayLike,
) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
  """MLR-SNet's LSTM cell with MLP gate maps, and its sigmoid head.

  One step, ``((h, c), loss) -> ((h', c'), fraction)``. With ``z =
  mlp_i2h(loss) + mlp_h2h(h)`` split as ``[i, f, o, g]``:

      c' = sigmoid(f - 1) * c + sigmoid(i) * tanh(g)
      h' = sigmoid(o) * tanh(c')
      fraction = sigmoid(head(h'))

  the meta-training cell of the official code (the module docstring says why
  this gate order). Each MLP is ``dense -> relu -> dense`` and every dense
  layer computes ``x @ kernel + bias``. The rate is ``gamma * fraction``. A
  pure function: differentiate it in ``params``, ``jax.vmap`` it over a batch
  of carries and losses.

  Args:
    params: the net's parameters, as :func:`mlr_snet_init` returns them.
    carry: ``(h, c)``, each of shape ``(..., 50)``.
    loss: the training loss, of shape ``(...)``.

  Returns:
    ``((h', c'), fraction)``, the fraction of shape ``(...)``, in (0, 1).

  Example:
    >>> import jax.numpy as jnp, plrs_jax
    >>> net = plrs_jax.mlr_snet_init(0)
    >>> zeros = jnp.zeros(50)
    >>> (h, c), fraction = plrs_jax.mlr_snet_cell(net, (zeros, zeros), 2.3)
    >>> h.shape, bool(0 < fraction < 1)
    ((50,), True)
  """
  h, c = carry
  x = jnp.asarray(loss)[..., None]
  z = (_dense(params['i2h_gates'],
              jax.nn.relu(_dense(params['i2h_hidden'], x)))
       + _dense(params['h2h_gates'],
                jax.nn.relu(_dense(params['h2h_hidden'], h))))
  i, f, o, g = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f - 1) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return (h, c), jax.nn.sigmoid(_dense(params['head'], h))[..., 0]


@jax.jit  # one compiled program, not one per layer's random draw
def _init_params(key: jax.Array) -> dict[str, dict[str, jax.Array]]:
  def uniform(key: jax.Array, shape: tuple[int, ...],
              fan_in: int) -> jax.Array:
    # PyTorch's nn.Linear: kaiming_uniform(a=sqrt(5)) for the weight and the
    # bias rule both give this bound.
    bound = 1 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

  keys = jax.random.split(key, (len(_LAYERS), 2))
  return {name: {'kernel': uniform(layer_keys[0], (fan_in, out), fan_in),
                 'bias': uniform(layer_keys[1], (out,), fan_in)}
          for (name, (fan_in, out)), layer_keys in zip(_LAYERS.items(), keys)}


def mlr_snet_init(key: Any) -> dict[str, dict[str, jax.Array]]:
  """Fresh MLR-SNet parameters, initialised as PyTorch initialises Linear.

  Every kernel and bias of the five layers is drawn uniformly in
  ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``: fan_in 1 (``i2h_hidden``), 25
  (``i2h_gates``, ``h2h_gates``) and 50 (``h2h_hidden``, ``head``). These are
  the official code's initial values in law: its own ``init_weights`` never
  applies (see the module docstring).

  Args:
    key: a typed key from ``jax.random.key``, a legacy ``jax.random.PRNGKey``
      or an int seed in [0, 2**32 - 1].

  Returns:
    The parameters of :func:`mlr_snet_cell` (hidden size 50), a dict of
    float32 arrays: ``{'i2h_hidden': {'kernel': (1, 25), 'bias': (25,)},
    'i2h_gates': {'kernel': (25, 200), ...}, 'h2h_hidden': {'kernel':
    (50, 25), ...}, 'h2h_gates': ..., 'head': {'kernel': (50, 1), 'bias':
    (1,)}}``; kernels are (in, out), PyTorch's weights transposed.

  Example:
    >>> import plrs_jax
    >>> net = plrs_jax.mlr_snet_init(0)
    >>> net['h2h_hidden']['kernel'].shape, net['head']['bias'].shape
    ((50, 25), (1,))
  """
  key = _validation.canonicalize_key('mlr_snet_init', key)
  return _init_params(key)


def _gamma(loss: jax.Array, num_classes: int) -> jax.Array:
  return (jnp.sqrt(loss) * jnp.log(loss * num_classes) / num_classes**0.25
          / 4)


def mlr_snet_gamma(initial_loss: float | jax.Array,
                   num_classes: int) -> jax.Array:
  """gamma, the largest rate MLR-SNet can give: its sigmoid's scale.

      gamma = sqrt(L_0) * ln(L_0 * C) / C**(1/4) / 4

  as the official code computes it from the mean training loss at
  initialisation. For a C-class cross-entropy L_0 is near ln C, so
  ``L_0 * C`` is near ``C ln C > 1`` and gamma is positive (0.67 for
  CIFAR-10, 1.04 for CIFAR-100).

  Args:
    initial_loss: L_0, the mean training loss of the initial model, > 0.
    num_classes: C, an int >= 2.

  Returns:
    gamma, a float32 scalar.

  Raises:
    ValueError: ``initial_loss * num_classes <= 1``: gamma would be <= 0.
      Such a loss is not an untrained classifier's cross-entropy; pass the
      loss before training, or choose gamma directly (any value > 0 that
      exceeds the rates you expect; :func:`mlr_snet` takes it as a number).

  Example:
    >>> import math, plrs_jax
    >>> round(float(plrs_jax.mlr_snet_gamma(math.log(10), num_classes=10)), 4)
    0.6691
  """
  fn = 'mlr_snet_gamma'
  loss = _validation.check_value(fn, 'initial_loss', initial_loss,
                                 positive=True)
  num_classes = _validation.check_int(fn, 'num_classes', num_classes,
                                      minimum=2)
  if loss is not None and loss * num_classes <= 1:
    raise ValueError(
        f'{fn}: `initial_loss * num_classes` must be > 1 for a positive '
        f'gamma, got {initial_loss=} and {num_classes=}. Pass the mean '
        'training loss before training (near ln(num_classes) for a '
        'cross-entropy), or give mlr_snet a gamma of your choice.')
  return _gamma(jnp.asarray(initial_loss, jnp.float32), num_classes)


class MLRSNetState(NamedTuple):
  """State of :func:`mlr_snet`; every scalar can be logged.

  Attributes:
    count: updates taken so far, int32.
    h: the LSTM's hidden state, shape (50,), the net's dtype (float32).
    c: the LSTM's cell state, shape (50,).
    gamma: the current scale of the rate (re-set at each switch).
    rate: alpha, the rate of the last update (NaN before the first).
  """
  # Named as optax names its states' counters; it hides tuple.count, which
  # nothing calls on a state.
  count: jax.Array  # type: ignore[assignment]
  h: jax.Array
  c: jax.Array
  gamma: jax.Array
  rate: jax.Array


def _as_dict(tree: Any) -> Any:
  """Nested mappings (a Flax ``FrozenDict``, say) as nested plain dicts,
  which JAX flattens whatever their type."""
  if isinstance(tree, Mapping):
    return {key: _as_dict(value) for key, value in tree.items()}
  return tree


def _step(net_params: _Params, h: jax.Array, c: jax.Array, loss: jax.Array,
          gamma: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """alpha and the new (h, c); the carried state is a constant (no BPTT)."""
  (h, c), fraction = mlr_snet_cell(
      net_params, (jax.lax.stop_gradient(h), jax.lax.stop_gradient(c)),
      loss.astype(h.dtype))
  return gamma * fraction, h, c


def _scalar_loss(fn: str, loss: Any) -> jax.Array:
  # A batch of per-example losses would give a batch of rates, which
  # broadcast silently against parameters of the same shape.
  if loss is None or jnp.shape(loss) != ():
    raise ValueError(f'{fn}: needs `loss=`, the scalar mini-batch training '
                     f'loss before this update, got {loss!r}.')
  return jnp.asarray(loss)


def mlr_snet(
    net_params: chex.ArrayTree | Sequence[chex.ArrayTree],
    *,
    gamma: float | jax.Array,
    switch_steps: Sequence[int] | None = None,
    num_classes: int | None = None,
    axis_name: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Scales updates by -alpha_t, the rate a frozen MLR-SNet gives the loss.

  At update ``t`` (counted from 0), given ``loss=`` L_t, the mini-batch
  training loss before this update:

      (h_t, c_t) = cell(L_t, (h_{t-1}, c_{t-1})),   (h_{-1}, c_{-1}) = 0
      alpha_t = gamma * sigmoid(head(h_t)),   updates <- -alpha_t * updates

  Chain it after what forms the descent direction: ``optax.chain(
  optax.add_decayed_weights(wd), plrs_jax.mlr_snet(...))`` is the official
  runs' plain SGD with coupled weight decay at the learnt rate (insert
  ``optax.trace(momentum)`` before it for PyTorch's SGD with momentum).
  Other extra arguments of ``update`` (``value=``...) are ignored.

  Transfer with snapshots. The official transfer runs three snapshots of the
  net (after meta-epochs 1, 100 and 200), each for a third of the new run,
  and recomputes gamma at each switch from the training loss, taking its
  absolute value (there the loss has usually fallen below 1/C and the
  logarithm is negative). Give ``net_params`` as a sequence of k parameter
  trees and ``switch_steps`` as k - 1 increasing update counts: tree j is
  used from update ``switch_steps[j - 1]`` on, and at that update gamma
  becomes ``|sqrt(L) ln(L C) / C**(1/4) / 4|`` with L the loss passed to it
  (the caller's current training loss; the official code uses the mean loss
  over the training set, computed at the switch) and C ``num_classes``. The
  LSTM state is carried across switches, as theirs is. Near L = 1/C that
  gamma is near 0 and training all but stops: the official rule, kept. The
  snapshots are stacked and indexed by the count: one compiled update serves
  every step.

  Args:
    net_params: the net's parameters, from :func:`mlr_snet_init` and
      meta-training; or, with ``switch_steps``, a sequence of such trees.
    gamma: the rate's scale, > 0, usually :func:`mlr_snet_gamma` of the
      initial loss.
    switch_steps: with several trees, the updates at which the next one
      takes over: ints >= 1, strictly increasing, one fewer than the trees.
    num_classes: C, an int >= 2, for gamma at the switches; needed exactly
      when ``switch_steps`` is given.
    axis_name: under ``pmap`` or ``shard_map``, the axis to average the loss
      over (``lax.pmean``) before the net sees it, so every replica computes
      the same rate.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs
    ``loss=``; its state is an :class:`MLRSNetState`.

  Example:
    >>> import jax.numpy as jnp, optax, plrs_jax
    >>> net = plrs_jax.mlr_snet_init(0)
    >>> gamma = plrs_jax.mlr_snet_gamma(2.3, num_classes=10)
    >>> tx = optax.chain(optax.add_decayed_weights(5e-4),
    ...                  plrs_jax.mlr_snet(net, gamma=gamma))
    >>> params = jnp.ones(3)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jnp.ones(3), state, params, loss=2.3)
    >>> rate = state[1].rate
    >>> bool(0 < rate < gamma), bool(jnp.allclose(updates, -rate * 1.0005))
    (True, True)

  References:
    Shu et al., MLR-SNet: Transferable LR Schedules for Heterogeneous Tasks,
    2022. https://arxiv.org/abs/2007.14546
  """
  fn = 'mlr_snet'
  _validation.check_value(fn, 'gamma', gamma, positive=True)
  if (switch_steps is None) != (num_classes is None):
    raise ValueError(
        f'{fn}: give `num_classes` exactly when `switch_steps` is given: gamma '
        f'is recomputed from the loss at each switch; got {num_classes=}.')
  if switch_steps is None:
    stacked = _as_dict(net_params)
    switching = None
  else:
    steps = [_validation.check_int(fn, 'switch_steps', step, minimum=1)
             for step in switch_steps]
    if any(a >= b for a, b in itertools.pairwise(steps)):
      raise ValueError(f'{fn}: `switch_steps` must be strictly increasing, '
                       f'got {switch_steps!r}.')
    trees = cast(Sequence[_Params], net_params)
    # A tree too many would never be used; one too few, the last reused.
    if len(trees) != len(steps) + 1:
      raise ValueError(
          f'{fn}: with {len(steps)} `switch_steps`, `net_params` must be a '
          f'sequence of {len(steps) + 1} parameter trees, one per period.')
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves),
                           *map(_as_dict, trees))
    switching = (np.asarray(steps, np.int32),
                 _validation.check_int(fn, 'num_classes', num_classes,
                                       minimum=2))
  dtype = jax.tree.leaves(stacked)[0].dtype

  def init_fn(params: optax.Params) -> MLRSNetState:
    del params
    zeros = jnp.zeros([_HIDDEN_SIZE], dtype)
    return MLRSNetState(count=jnp.zeros([], jnp.int32), h=zeros, c=zeros,
                        gamma=jnp.asarray(gamma, dtype),
                        rate=jnp.full([], jnp.nan, dtype))

  def update_fn(
      updates: optax.Updates,
      state: optax.OptState,
      params: optax.Params | None = None,
      *,
      loss: jax.typing.ArrayLike | None = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, MLRSNetState]:
    del params, extra_args
    state = cast(MLRSNetState, state)
    value = _scalar_loss(fn, loss).astype(dtype)
    if axis_name is not None:
      value = jax.lax.pmean(value, axis_name)
    if switching is not None:
      switches, classes = switching
      period = jnp.searchsorted(switches, state.count, side='right')
      net = jax.tree.map(lambda leaf: leaf[period], stacked)
      new_gamma = jnp.where(jnp.any(state.count == switches),
                            jnp.abs(_gamma(value, classes)), state.gamma)
    else:
      net, new_gamma = stacked, state.gamma
    rate, h, c = _step(net, state.h, state.c, value, new_gamma)
    updates = jax.tree.map(lambda u: (-rate).astype(u.dtype) * u, updates)
    return updates, MLRSNetState(
        count=jnp.asarray(optax.safe_int32_increment(state.count)), h=h, c=c,
        gamma=new_gamma, rate=rate)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def mlr_snet_meta_loss(
    net_params: _Params,
    state: MLRSNetState,
    *,
    loss: jax.typing.ArrayLike,
    grads: optax.Updates,
    params: optax.Params,
    meta_loss_fn: Callable[[Any], jax.typing.ArrayLike],
    weight_decay: float = 0.0,
) -> jax.Array:
  """The meta loss of one SGD step at MLR-SNet's rate; grad it for phi.

      alpha(phi) = state.gamma * sigmoid(head(cell_phi(loss, (h, c))))
      theta' = theta - alpha(phi) * (g + weight_decay * theta)
      returns meta_loss_fn(theta')

  ``jax.grad`` with respect to ``net_params`` (phi) is the official first
  order hypergradient: g, the loss and the carried ``(h, c)`` are constants,
  so it is ``-<grad meta_loss(theta'), g + wd theta> * d alpha / d phi``.
  Pure and jittable; it does not advance the state.

  The official meta-training loop (plain SGD, weight decay 5e-4, batch 128,
  1000 training images held out): at every step, compute the loss and
  gradient g of the training batch; once every ``t_val = 300`` steps, before
  the model's update, take the hypergradient of this function with
  ``meta_loss_fn`` the loss on the next held-out batch and step phi with
  Adam (lr 1e-3, weight decay 1e-4); then update the model with
  :func:`mlr_snet` at the current phi. Their Adam is PyTorch's, whose
  ``weight_decay`` adds 1e-4 phi to the gradient before the moments, so the
  meta-optimizer is ``optax.chain(optax.add_decayed_weights(1e-4),
  optax.adam(1e-3))``, not ``optax.adamw``, which decays phi after them. As
  :func:`mlr_snet` closes over phi, build it inside the jitted step from the
  current phi (its state does not depend on phi), as the example does. Their
  loop runs the cell twice on the meta-steps (in the meta step, then again
  for the model's update, on the same loss): their state advances twice
  there, here once.

  Args:
    net_params: phi, the parameters to differentiate.
    state: the :class:`MLRSNetState` before this step's update (the
      :func:`mlr_snet` element of the optimizer state).
    loss: the training batch's loss, the same the update receives (its
      ``pmean`` under ``pmap``).
    grads: g, its gradient with respect to ``params``.
    params: theta, the model's parameters.
    meta_loss_fn: theta -> the loss on a held-out batch.
    weight_decay: coupled L2 weight decay of the model's SGD, >= 0.

  Returns:
    The meta loss, a scalar.

  Example:
    >>> import jax, jax.numpy as jnp, optax, plrs_jax
    >>> def batch_loss(w, target):
    ...   return 0.5 * jnp.sum((w - target) ** 2)
    >>> meta_opt = optax.chain(optax.add_decayed_weights(1e-4),
    ...                        optax.adam(1e-3))
    >>> @jax.jit
    ... def meta_step(phi, phi_opt_state, tx_state, w, target, held_out):
    ...   loss, grads = jax.value_and_grad(batch_loss)(w, target)
    ...   hypergrad = jax.grad(plrs_jax.mlr_snet_meta_loss)(
    ...       phi, tx_state, loss=loss, grads=grads, params=w,
    ...       meta_loss_fn=lambda v: batch_loss(v, held_out))
    ...   phi_updates, phi_opt_state = meta_opt.update(hypergrad,
    ...                                                phi_opt_state, phi)
    ...   phi = optax.apply_updates(phi, phi_updates)
    ...   tx = plrs_jax.mlr_snet(phi, gamma=1.0)
    ...   updates, tx_state = tx.update(grads, tx_state, loss=loss)
    ...   return phi, phi_opt_state, tx_state, optax.apply_updates(w, updates)
    >>> phi = plrs_jax.mlr_snet_init(0)
    >>> phi_opt_state = meta_opt.init(phi)
    >>> tx_state = plrs_jax.mlr_snet(phi, gamma=1.0).init(None)
    >>> w = jnp.zeros(4)
    >>> phi, phi_opt_state, tx_state, w = meta_step(
    ...     phi, phi_opt_state, tx_state, w, jnp.ones(4), jnp.ones(4))
    >>> bool(0 < tx_state.rate < 1)
    True
  """
  fn = 'mlr_snet_meta_loss'
  _validation.check_value(fn, 'weight_decay', weight_decay)
  loss = jax.lax.stop_gradient(_scalar_loss(fn, loss))
  rate, _, _ = _step(net_params, state.h, state.c, loss, state.gamma)
  grads = jax.lax.stop_gradient(grads)
  stepped = jax.tree.map(
      lambda p, g: p - rate.astype(p.dtype) * (g + weight_decay * p),
      params, grads)
  return jnp.asarray(meta_loss_fn(stepped))
