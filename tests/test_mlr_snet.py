"""MLR-SNet against a numpy restatement of its equations, closed forms and
finite differences."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import plrs_jax

HIDDEN = 50
# fan_in of each layer: the loss (1), the MLPs' hidden layers (25) and h (50).
FAN_IN = {'i2h_hidden': 1, 'i2h_gates': 25, 'h2h_hidden': 50, 'h2h_gates': 25,
          'head': 50}
# float32 against float64: each pre-activation is a sum of at most 50 products
# of numbers below 1 in magnitude, off by at most ~50 * 6e-8 = 3e-6; sigmoid
# and tanh do not amplify it, and c, h and the head stay below 1 in magnitude
# over the few steps run here. A wrong gate, offset or layer moves them by
# 1e-2 or more.
ATOL = 2e-5


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def numpy_cell(net, loss, h, c):
  """One step of the meta-training cell, in float64, from the arrays."""
  p = {name: {k: np.asarray(v, np.float64) for k, v in layer.items()}
       for name, layer in net.items()}

  def linear(name, x):
    return x @ p[name]['kernel'] + p[name]['bias']

  def mlp(first, second, x):
    return linear(second, np.maximum(linear(first, x), 0))

  z = (mlp('i2h_hidden', 'i2h_gates', np.array([loss], np.float64))
       + mlp('h2h_hidden', 'h2h_gates', h))
  in_gate = sigmoid(z[:HIDDEN])
  forget_gate = sigmoid(z[HIDDEN:2 * HIDDEN] - 1)
  out_gate = sigmoid(z[2 * HIDDEN:3 * HIDDEN])
  cell_input = np.tanh(z[3 * HIDDEN:])
  c = forget_gate * c + in_gate * cell_input
  h = out_gate * np.tanh(c)
  return h, c, sigmoid(linear('head', h))[0]


def numpy_gamma(loss, num_classes):
  return math.sqrt(loss) * math.log(loss * num_classes) / num_classes**0.25 / 4


def numpy_run(nets, losses, gammas):
  """Rates, h and c of each step; nets[t] and gammas[t] serve step t."""
  h, c = np.zeros(HIDDEN), np.zeros(HIDDEN)
  rates, hs, cs = [], [], []
  for net, loss, gamma in zip(nets, losses, gammas):
    h, c, fraction = numpy_cell(net, loss, h, c)
    rates.append(gamma * fraction)
    hs.append(h)
    cs.append(c)
  return np.array(rates), np.array(hs), np.array(cs)


LOSSES = [2.3, 2.1, 5.0, 0.4, 0.05, 1.2]


def run_transform(tx, losses, gradient=np.ones(3, np.float32), **extra_args):
  """Runs `tx` on `losses` one jitted update at a time; counts traces."""
  traces = []

  @jax.jit
  def step(state, loss):
    traces.append(None)
    return tx.update(jnp.asarray(gradient), state, loss=loss, **extra_args)

  state = tx.init(None)
  updates, states = [], []
  for loss in losses:
    update, state = step(state, jnp.float32(loss))
    updates.append(update)
    states.append(state)
  return np.array(updates), jax.tree.map(lambda *x: np.stack(x), *states), \
      len(traces)


def test_cell_matches_numpy_lstm():
  net = plrs_jax.mlr_snet_init(3)
  cell = jax.jit(lambda carry, loss: plrs_jax.mlr_snet_cell(net, carry, loss))
  carry = (jnp.zeros(HIDDEN), jnp.zeros(HIDDEN))
  h, c = np.zeros(HIDDEN), np.zeros(HIDDEN)
  for loss in LOSSES:
    carry, fraction = cell(carry, jnp.float32(loss))
    h, c, expected = numpy_cell(net, loss, h, c)
    np.testing.assert_allclose(carry[0], h, atol=ATOL)
    np.testing.assert_allclose(carry[1], c, atol=ATOL)
    np.testing.assert_allclose(fraction, expected, atol=ATOL)
  assert np.abs(h).max() > 1e-2  # the comparison is not between zeros


def test_cell_takes_leading_batch_axes():
  net = plrs_jax.mlr_snet_init(6)
  rng = np.random.default_rng(0)
  h = rng.uniform(-.5, .5, (2, 3, HIDDEN)).astype(np.float32)
  c = rng.uniform(-1, 1, (2, 3, HIDDEN)).astype(np.float32)
  losses = rng.uniform(0.1, 3, (2, 3)).astype(np.float32)
  (new_h, new_c), fraction = jax.jit(plrs_jax.mlr_snet_cell)(
      net, (h, c), losses)
  assert new_h.shape == new_c.shape == (2, 3, HIDDEN)
  assert fraction.shape == (2, 3)
  for index in np.ndindex(2, 3):
    expected = numpy_cell(net, losses[index], h[index], c[index])
    np.testing.assert_allclose(new_h[index], expected[0], atol=ATOL)
    np.testing.assert_allclose(new_c[index], expected[1], atol=ATOL)
    np.testing.assert_allclose(fraction[index], expected[2], atol=ATOL)


def test_init_is_pytorch_default():
  net = plrs_jax.mlr_snet_init(0)
  assert set(net) == set(FAN_IN)
  normalised = []
  for name, fan_in in FAN_IN.items():
    out = {'i2h_hidden': 25, 'h2h_hidden': 25, 'head': 1}.get(name, 200)
    assert net[name]['kernel'].shape == (fan_in, out)
    assert net[name]['bias'].shape == (out,)
    for leaf in net[name].values():
      assert leaf.dtype == jnp.float32
      normalised.append(np.ravel(leaf) * math.sqrt(fan_in))
  normalised = np.concatenate(normalised)
  assert np.abs(normalised).max() <= 1
  # Every entry is U(-1/sqrt(fan_in), 1/sqrt(fan_in)): scaled by sqrt(fan_in)
  # the 11,000-odd entries are one sample of U(-1, 1). Flax's default (lecun
  # normal, zero bias) or a bound of 0.1 fails this by far.
  assert stats.kstest(normalised, stats.uniform(-1, 2).cdf).pvalue > 1e-3
  # Keys: an int seed is jax.random.key(seed); another seed, other values.
  same = plrs_jax.mlr_snet_init(jax.random.key(0))
  other = plrs_jax.mlr_snet_init(jax.random.PRNGKey(1))
  np.testing.assert_array_equal(same['head']['kernel'], net['head']['kernel'])
  assert not np.array_equal(other['head']['kernel'], net['head']['kernel'])


@pytest.mark.parametrize('loss,num_classes', [(math.log(10), 10),
                                              (math.log(100), 100),
                                              (0.3, 4), (7.0, 2)])
def test_gamma_closed_form(loss, num_classes):
  expected = numpy_gamma(loss, num_classes)
  assert expected > 0
  np.testing.assert_allclose(plrs_jax.mlr_snet_gamma(loss, num_classes),
                             expected, rtol=1e-6)
  traced = jax.jit(plrs_jax.mlr_snet_gamma, static_argnums=1)
  np.testing.assert_allclose(traced(jnp.float32(loss), num_classes), expected,
                             rtol=1e-6)


@pytest.mark.parametrize('loss,num_classes,error', [
    (0.0, 10, ValueError), (-1.0, 10, ValueError), (math.nan, 10, ValueError),
    (0.1, 10, ValueError), (0.05, 10, ValueError), (2.3, 1, ValueError),
    (2.3, 10.5, ValueError)])
def test_gamma_rejects(loss, num_classes, error):
  with pytest.raises(error, match='mlr_snet_gamma'):
    plrs_jax.mlr_snet_gamma(loss, num_classes)


def regression_problem(seed):
  rng = np.random.default_rng(seed)
  params = {'w': rng.normal(size=(4, 2)), 'b': rng.normal(size=2)}
  batches = [(rng.normal(size=(8, 4)), rng.normal(size=(8, 2)))
             for _ in range(2)]

  def loss_fn(p, batch):
    x, y = batch
    return jnp.mean((x @ p['w'] + p['b'] - y) ** 2)
  return params, batches, loss_fn


def test_hypergradient_matches_finite_differences():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    net = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64),
                       plrs_jax.mlr_snet_init(1))
    state = plrs_jax.MLRSNetState(
        count=jnp.int32(7), h=jnp.asarray(rng.uniform(-.5, .5, HIDDEN)),
        c=jnp.asarray(rng.uniform(-1, 1, HIDDEN)), gamma=jnp.float64(0.8),
        rate=jnp.float64(0.3))
    params, (train, held_out), loss_fn = regression_problem(0)
    loss, grads = jax.value_and_grad(loss_fn)(params, train)

    @jax.jit
    def meta_loss(phi):
      return plrs_jax.mlr_snet_meta_loss(
          phi, state, loss=loss, grads=grads, params=params,
          meta_loss_fn=lambda p: loss_fn(p, held_out), weight_decay=0.1)

    # The value: held-out loss after theta - alpha (g + 0.1 theta), alpha
    # from the numpy cell at the given state.
    rate = 0.8 * numpy_cell(net, float(loss), np.asarray(state.h),
                            np.asarray(state.c))[2]
    stepped = jax.tree.map(lambda p, g: p - rate * (g + 0.1 * p), params,
                           grads)
    np.testing.assert_allclose(meta_loss(net), loss_fn(stepped, held_out),
                               rtol=1e-12)
    hypergrad = jax.jit(jax.grad(meta_loss))(net)
    leaves, treedef = jax.tree.flatten(net)
    direction = jax.tree.unflatten(
        treedef, [jnp.asarray(rng.normal(size=x.shape)) for x in leaves])
    eps = 1e-5

    def shifted(sign):
      return meta_loss(jax.tree.map(lambda p, v: p + sign * eps * v, net,
                                    direction))
    numeric = (shifted(1) - shifted(-1)) / (2 * eps)
    analytic = sum(jnp.vdot(g, v) for g, v in zip(
        jax.tree.leaves(hypergrad), jax.tree.leaves(direction)))
    # float64: the central difference is off by ~eps^2 times the third
    # derivative plus ~1e-16 / eps of rounding, both under 1e-9 here; a
    # missing or doubled term changes the derivative by order 1.
    assert abs(float(analytic)) > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7)


def meta_train(problems, gamma, steps=300):
  """Adam on phi (PyTorch's: L2 coupled) over a batch of one-step problems."""
  meta_opt = optax.chain(optax.add_decayed_weights(1e-4), optax.adam(1e-3))
  hessians, centers, starts, states = problems

  def quadratic(w, hessian, center):
    return 0.5 * (w - center) @ (hessian * (w - center))

  def meta_loss(phi):
    def one(hessian, center, start, state):
      loss, grads = jax.value_and_grad(quadratic)(start, hessian, center)
      # Relative to the loss before the step, so that every problem weighs
      # alike (its minimiser in the rate is the same).
      return plrs_jax.mlr_snet_meta_loss(
          phi, state, loss=loss, grads=grads, params=start,
          meta_loss_fn=lambda w: quadratic(w, hessian, center) / loss)
    return jnp.mean(jax.vmap(one)(hessians, centers, starts, states))

  def rates(phi):
    def one(hessian, center, start, state):
      loss = quadratic(start, hessian, center)
      return plrs_jax.mlr_snet(phi, gamma=gamma).update(
          {}, state, loss=loss)[1].rate
    return jax.vmap(one)(hessians, centers, starts, states)

  @jax.jit
  def train(phi):
    def step(carry, _):
      phi, opt_state = carry
      updates, opt_state = meta_opt.update(jax.grad(meta_loss)(phi),
                                           opt_state, phi)
      return (optax.apply_updates(phi, updates), opt_state), None
    phi = jax.lax.scan(step, (phi, meta_opt.init(phi)), length=steps)[0][0]
    return rates(phi)

  return train(plrs_jax.mlr_snet_init(0))


def quadratic_family(curvatures, num_problems, seed=0, dim=5):
  """Problems with Hessian diag(curvatures), random centres and starts, and
  fixed random LSTM states; each state carries the same gamma."""
  rng = np.random.default_rng(seed)
  gamma = plrs_jax.mlr_snet_gamma(math.log(10), 10)
  hessians = np.tile(np.asarray(curvatures, np.float32), (num_problems, 1))
  centers = rng.normal(size=(num_problems, dim)).astype(np.float32)
  scales = np.geomspace(0.2, 2, num_problems)[:, None]
  starts = (centers + scales * rng.normal(size=(num_problems, dim))).astype(
      np.float32)
  states = plrs_jax.MLRSNetState(
      count=jnp.zeros(num_problems, jnp.int32),
      h=jnp.asarray(rng.uniform(-.3, .3, (num_problems, HIDDEN)), jnp.float32),
      c=jnp.asarray(rng.uniform(-.5, .5, (num_problems, HIDDEN)), jnp.float32),
      gamma=jnp.full(num_problems, gamma),
      rate=jnp.full(num_problems, jnp.nan))
  return (hessians, centers, starts, states), gamma


def test_meta_training_learns_inverse_curvature():
  # Hessian L I: the greedy one-step objective f(w - a g) is smallest at
  # a = 1/L whatever w, so every problem of the family asks for 1/L.
  curvature = 4.0
  problems, gamma = quadratic_family([curvature] * 5, num_problems=16)
  assert gamma > 1 / curvature  # the net can reach 1/L
  rates = meta_train(problems, gamma)
  initial = meta_train(problems, gamma, steps=0)
  assert np.abs(initial * curvature - 1).max() > 0.2  # it had to learn
  np.testing.assert_allclose(rates, 1 / curvature, rtol=0.02)


def test_meta_training_learns_greedy_rate_of_general_quadratic():
  # Hessian diag(mu..L), one problem: the best step along -g is
  # g'g / g'Hg, between 1/L and 1/mu.
  curvatures = np.array([1.0, 1.5, 2.5, 4.0, 6.0], np.float32)
  problems, gamma = quadratic_family(curvatures, num_problems=1, seed=3)
  hessians, centers, starts, _ = problems
  g = hessians[0] * (starts[0] - centers[0])
  greedy = g @ g / (g @ (hessians[0] * g))
  assert 1 / curvatures.max() < greedy < 1 / curvatures.min()
  assert gamma > greedy
  rates = meta_train(problems, gamma)
  np.testing.assert_allclose(rates, greedy, rtol=0.02)


def test_transform_follows_numpy_and_is_deterministic():
  net = plrs_jax.mlr_snet_init(5)
  gamma = plrs_jax.mlr_snet_gamma(2.3, 10)
  tx = optax.chain(optax.add_decayed_weights(0.5),
                   plrs_jax.mlr_snet(net, gamma=gamma))
  params = np.array([1.0, -2.0, 0.5], np.float32)
  gradient = np.array([0.3, 0.1, -1.0], np.float32)

  @jax.jit
  def step(state, loss):
    return tx.update(jnp.asarray(gradient), state, jnp.asarray(params),
                     loss=loss, value=loss)

  state = tx.init(jnp.asarray(params))
  assert np.isnan(state[1].rate)
  rates, _, _ = numpy_run([net] * len(LOSSES), LOSSES,
                          [float(gamma)] * len(LOSSES))
  for loss, expected in zip(LOSSES, rates):
    updates, new_state = step(state, jnp.float32(loss))
    again, _ = step(state, jnp.float32(loss))
    np.testing.assert_array_equal(updates, again)
    np.testing.assert_allclose(new_state[1].rate, expected, atol=ATOL)
    np.testing.assert_allclose(updates, -expected * (gradient + 0.5 * params),
                               rtol=1e-4)
    state = new_state
  assert int(state[1].count) == len(LOSSES)


def test_rate_depends_on_loss_and_carried_state():
  tx = plrs_jax.mlr_snet(plrs_jax.mlr_snet_init(2), gamma=1.0)
  state = tx.init(None)
  _, low = tx.update({}, state, loss=0.1)
  _, high = tx.update({}, state, loss=3.0)
  assert abs(float(low.rate) - float(high.rate)) > 1e-4
  assert np.abs(high.h).min() > 0 and np.abs(high.c).min() > 0
  # The same loss from the carried state gives another rate and state.
  _, later = tx.update({}, high, loss=3.0)
  assert abs(float(later.rate) - float(high.rate)) > 1e-6
  assert np.abs(later.h - high.h).max() > 1e-4
  assert np.abs(later.c - high.c).max() > 1e-4


def test_snapshots_switch_at_the_right_steps_in_one_trace():
  nets = [plrs_jax.mlr_snet_init(seed) for seed in (10, 11, 12)]
  gamma = 0.7
  tx = plrs_jax.mlr_snet(nets, gamma=gamma, switch_steps=[2, 4],
                         num_classes=10)
  updates, states, traces = run_transform(tx, LOSSES, value=0.0)
  assert traces == 1
  # Steps 0-1: net 0 and the given gamma; 2-3: net 1 and gamma from loss 5.0;
  # 4-5: net 2 and |gamma| from loss 0.05, where ln(0.05 * 10) < 0.
  gammas = [gamma] * 2 + [numpy_gamma(5.0, 10)] * 2 + [
      abs(numpy_gamma(0.05, 10))] * 2
  expected, h, c = numpy_run([nets[0]] * 2 + [nets[1]] * 2 + [nets[2]] * 2,
                             LOSSES, gammas)
  np.testing.assert_allclose(states.gamma, gammas, rtol=1e-6)
  np.testing.assert_allclose(states.rate, expected, atol=ATOL)
  np.testing.assert_allclose(states.h, h, atol=ATOL)
  np.testing.assert_allclose(states.c, c, atol=ATOL)
  np.testing.assert_allclose(updates, -expected[:, None] * np.ones(3),
                             rtol=1e-6)
  # Any other net at a step would be seen: they give other rates.
  other, _, _ = numpy_run([nets[0]] * 6, LOSSES, gammas)
  assert np.abs(other[2:] - expected[2:]).min() > 1e-4


def test_frozen_dict_and_tuple_of_snapshots():
  net = plrs_jax.mlr_snet_init(0)
  plain = run_transform(plrs_jax.mlr_snet(net, gamma=1.0), LOSSES[:2])
  # Any read-only Mapping (Flax's FrozenDict is one) is a net, not a tuple.
  read_only = types.MappingProxyType(
      {name: types.MappingProxyType(layer) for name, layer in net.items()})
  frozen = run_transform(plrs_jax.mlr_snet(read_only, gamma=1.0), LOSSES[:2])
  np.testing.assert_array_equal(plain[0], frozen[0])
  one_switch = plrs_jax.mlr_snet((net, net), gamma=1.0, switch_steps=(5,),
                                 num_classes=10)
  np.testing.assert_allclose(run_transform(one_switch, LOSSES[:2])[0],
                             plain[0], rtol=1e-6)
  # No switch: the one tree of the sequence throughout.
  no_switch = plrs_jax.mlr_snet([net], gamma=1.0, switch_steps=[],
                                num_classes=10)
  np.testing.assert_allclose(run_transform(no_switch, LOSSES[:2])[0],
                             plain[0], rtol=1e-6)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(gamma=0.0), ValueError, 'gamma'),
    (dict(gamma=-1.0), ValueError, 'gamma'),
    (dict(gamma=1.0, num_classes=10), ValueError, 'num_classes'),
    (dict(gamma=1.0, switch_steps=[2], num_classes=10), ValueError,
     'sequence of 2'),
    (dict(gamma=1.0, switch_steps=[2, 2], num_classes=10, snapshots=3),
     ValueError, 'strictly increasing'),
    (dict(gamma=1.0, switch_steps=[0], num_classes=10, snapshots=2),
     ValueError, 'switch_steps'),
    (dict(gamma=1.0, switch_steps=[3], num_classes=10, snapshots=3),
     ValueError, 'sequence of 2'),
    (dict(gamma=1.0, switch_steps=[3], snapshots=2), ValueError,
     'num_classes'),
    (dict(gamma=1.0, switch_steps=[3], num_classes=1, snapshots=2),
     ValueError, 'num_classes'),
])
def test_mlr_snet_rejects(kwargs, error, match):
  net = plrs_jax.mlr_snet_init(0)
  snapshots = kwargs.pop('snapshots', None)
  with pytest.raises(error, match=match):
    plrs_jax.mlr_snet(net if snapshots is None else [net] * snapshots,
                      **kwargs)


def test_mlr_snet_rejects_a_missing_or_batched_loss():
  net = plrs_jax.mlr_snet_init(0)
  tx = plrs_jax.mlr_snet(net, gamma=1.0)
  with pytest.raises(ValueError, match='loss='):
    tx.update({}, tx.init(None), value=1.0)
  with pytest.raises(ValueError, match='scalar'):
    tx.update({}, tx.init(None), loss=jnp.ones(2))


def test_replicas_agree_and_match_one_device_fed_the_mean():
  devices = jax.local_device_count()
  assert devices == 8
  net = plrs_jax.mlr_snet_init(4)
  gradient = jnp.ones(3)
  losses = np.linspace(0.2, 3.0, 3 * devices, dtype=np.float32).reshape(
      3, devices)

  def replicated(axis_name):
    tx = plrs_jax.mlr_snet(net, gamma=0.9, axis_name=axis_name)
    step = jax.pmap(lambda s, l: tx.update(gradient, s, loss=l),
                    axis_name='batch')
    state = jax.tree.map(lambda x: jnp.stack([x] * devices), tx.init(None))
    rates = []
    for step_losses in losses:
      updates, state = step(state, step_losses)
      rates.append(state.rate)
    return np.array(rates), updates, state

  rates, updates, state = replicated('batch')
  tx = plrs_jax.mlr_snet(net, gamma=0.9)
  single = tx.init(None)
  for step_losses, step_rates in zip(losses, rates):
    # Every replica holds the same rate, bit for bit...
    assert (step_rates == step_rates[0]).all()
    single_updates, single = tx.update(gradient, single,
                                       loss=np.mean(step_losses))
    # ...that of one device fed the mean loss: the float32 means differ by
    # at most a few ulp of the loss, far below what another loss changes.
    np.testing.assert_allclose(step_rates[0], single.rate, rtol=1e-5)
  np.testing.assert_allclose(updates[0], single_updates, rtol=1e-5)
  np.testing.assert_allclose(state.h[0], single.h, atol=1e-6)
  # Without axis_name each replica follows its own loss.
  unaveraged, _, _ = replicated(None)
  assert np.abs(unaveraged[-1] - unaveraged[-1][0]).max() > 1e-4
