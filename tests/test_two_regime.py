"""two_regime: the large-step optimizer, then a fresh small-step one.

The reference in every test is the two optimizers run by hand, eagerly: the
large one for `switch_step` updates, then the small one initialised from the
parameters reached at the switch. Both sides do the same float32 operations,
in XLA's order on one side and op by op on the other: a few roundings of
2**-24 per update, so rtol 1e-5 over 12 updates covers any reordering while a
wrong optimizer, a stale state or an off-by-one switch moves the parameters
by whole steps.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plrs_jax

RTOL = 1e-5
SWITCH = 5
STEPS = 12
TARGET = {'w': jnp.array([1.0, -2.0, 3.0]), 'b': jnp.array(0.5)}


def loss(params):
  return sum(jnp.sum((params[k] - TARGET[k]) ** 2) for k in params)


def initial_params():
  return {'w': jnp.array([0.3, 0.1, -0.2]), 'b': jnp.array(-1.0)}


def anchored_sgd(rate: float, pull: float) -> optax.GradientTransformation:
  """SGD pulled towards where it started: its state is the initial params."""
  def init(params):
    return jax.tree.map(jnp.array, params)

  def update(updates, anchor, params):
    return jax.tree.map(
        lambda g, p, a: -rate * g - pull * (p - a), updates, params,
        anchor), anchor
  return optax.GradientTransformation(init, update)


def run(tx, params, steps=STEPS):
  state = tx.init(params)
  trajectory = []
  for _ in range(steps):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
    trajectory.append(params)
  return trajectory, state


def reference(large, small, params):
  """The large optimizer for SWITCH updates, then a fresh small one."""
  before, _ = run(large, params, SWITCH)
  after, _ = run(small, before[-1], STEPS - SWITCH)
  return before + after


def jitted_run(tx, params):
  @jax.jit
  def train(params):
    def step(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      params = optax.apply_updates(params, updates)
      return (params, state), params
    (_, state), trajectory = jax.lax.scan(step, (params, tx.init(params)),
                                          length=STEPS)
    return trajectory, state
  trajectory, state = train(params)
  return [jax.tree.map(lambda x, i=i: x[i], trajectory)
          for i in range(STEPS)], state


def assert_trajectories_close(actual, expected):
  assert len(actual) == len(expected)
  for a, e in zip(actual, expected):
    chex.assert_trees_all_close(a, e, rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize('small', [
    optax.adam(0.05),
    optax.sgd(0.05, momentum=0.9),
    # Its state is the parameters at init: right only if built at the switch.
    anchored_sgd(0.1, 0.3),
], ids=['adam', 'momentum', 'params_state'])
def test_jit_matches_large_then_fresh_small(small):
  large = optax.sgd(0.2, momentum=0.5)
  tx = plrs_jax.two_regime(large, small, SWITCH)
  trajectory, state = jitted_run(tx, initial_params())
  assert_trajectories_close(trajectory,
                            reference(large, small, initial_params()))
  assert int(state.count) == STEPS
  assert int(state.regime) == 1


def test_params_state_is_built_from_switch_params():
  """The anchor is where the large regime ended, not the initial params."""
  tx = plrs_jax.two_regime(optax.sgd(0.2), anchored_sgd(0.1, 0.3), SWITCH)
  trajectory, state = jitted_run(tx, initial_params())
  chex.assert_trees_all_close(state.small_step, trajectory[SWITCH - 1],
                              rtol=RTOL)


def test_updates_before_switch_are_large_steps_and_small_state_untouched():
  large = optax.sgd(0.2, momentum=0.5)
  small = optax.adam(0.05)
  tx = plrs_jax.two_regime(large, small, SWITCH)
  params = initial_params()
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(SWITCH):
    _, state = update(jax.grad(loss)(params), state, params)
    assert int(state.regime) == 0
  chex.assert_trees_all_equal(state.small_step, small.init(params))


def test_one_compilation_for_both_regimes():
  traces = []

  def update(grads, state, params):
    traces.append(1)
    return tx.update(grads, state, params)

  tx = plrs_jax.two_regime(optax.sgd(0.2), optax.adam(0.05), 2)
  params = initial_params()
  state = tx.init(params)
  step = jax.jit(update)
  for _ in range(5):
    _, state = step(jax.grad(loss)(params), state, params)
  assert len(traces) == 1


def test_pmap_on_four_devices_matches_single_device():
  devices = jax.devices()[:4]
  large = optax.sgd(0.2, momentum=0.5)
  small = anchored_sgd(0.1, 0.3)
  tx = plrs_jax.two_regime(large, small, SWITCH)
  params = initial_params()
  # Each device sees a quarter of the data: its own offset of the target.
  offsets = jnp.array([-0.3, -0.1, 0.1, 0.3])

  def step(carry, offset):
    params, state = carry
    grads = jax.grad(
        lambda p: loss(jax.tree.map(lambda x: x + offset, p)))(params)
    grads = jax.lax.pmean(grads, 'devices')
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  p_step = jax.pmap(step, axis_name='devices', devices=devices)
  carry = jax.tree.map(lambda x: jnp.stack([x] * 4), (params, tx.init(params)))
  trajectory = []
  for _ in range(STEPS):
    carry = p_step(carry, offsets)
    replicas = carry[0]
    for i in range(1, 4):  # every replica took the same step
      chex.assert_trees_all_equal(jax.tree.map(lambda x, i=i: x[i], replicas),
                                  jax.tree.map(lambda x: x[0], replicas))
    trajectory.append(jax.tree.map(lambda x: x[0], replicas))
  # The mean of the offset gradients is the gradient of `loss`: offsets sum
  # to 0 and the loss is quadratic.
  assert_trajectories_close(trajectory, reference(large, small, params))


def test_extra_arguments_reach_both_optimizers():
  small = optax.chain(optax.sgd(0.1),
                      optax.contrib.reduce_on_plateau(patience=1))
  tx = plrs_jax.two_regime(optax.sgd(0.2), small, 2)
  params = initial_params()
  state = tx.init(params)
  for value in (5.0, 4.0, 3.0, 2.5):
    _, state = tx.update(jax.grad(loss)(params), state, params, value=value)
  plateau = state.small_step[1]
  # Two updates after the switch: reduce_on_plateau saw 3.0 and 2.5.
  assert float(plateau.best_value) == 2.5


def test_sgd_adam_recipe_matches_numpy():
  """SGD at the large rate, then Adam's formula, restated in numpy."""
  large_rate, small_rate, decay = 0.2, 0.03, 0.01
  tx = plrs_jax.two_regime_sgd_adam(large_rate, small_rate, SWITCH,
                                    weight_decay=decay)
  trajectory, _ = jitted_run(tx, initial_params())
  target = np.concatenate([np.asarray(TARGET['w']), [0.5]])
  x = np.array([0.3, 0.1, -0.2, -1.0])
  m = v = np.zeros(4)
  expected = []
  for t in range(STEPS):
    g = 2 * (x - target) + decay * x
    if t < SWITCH:
      x = x - large_rate * g
    else:
      n = t - SWITCH + 1
      m = 0.9 * m + 0.1 * g
      v = 0.999 * v + 0.001 * g * g
      x = x - small_rate * (m / (1 - 0.9**n)) / (
          np.sqrt(v / (1 - 0.999**n)) + 1e-8)
    expected.append(x)
  actual = [np.concatenate([p['w'], p['b'][None]]) for p in trajectory]
  np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize('kwargs, message', [
    (dict(switch_step=-1), r'`switch_step` must be an int in \[0,'),
    (dict(switch_step=2.5), r'`switch_step` must be an int in \[0,'),
])
def test_bad_arguments(kwargs, message):
  args = dict(large_step=optax.sgd(0.1), small_step=optax.adam(0.01),
              switch_step=3)
  with pytest.raises(ValueError, match=message):
    plrs_jax.two_regime(**{**args, **kwargs})


@pytest.mark.parametrize('kwargs, message', [
    (dict(large_learning_rate=0.0), '`large_learning_rate` must be'),
    (dict(small_learning_rate=-1.0), '`small_learning_rate` must be'),
    (dict(weight_decay=float('nan')), '`weight_decay` must be'),
])
def test_recipe_bad_arguments(kwargs, message):
  args = dict(large_learning_rate=0.1, small_learning_rate=0.01,
              switch_step=3)
  with pytest.raises(ValueError, match=message):
    plrs_jax.two_regime_sgd_adam(**{**args, **kwargs})


def test_update_without_params_is_refused():
  tx = plrs_jax.two_regime(optax.sgd(0.1), optax.adam(0.01), 3)
  params = initial_params()
  with pytest.raises(ValueError, match='needs `params`'):
    tx.update(params, tx.init(params))
