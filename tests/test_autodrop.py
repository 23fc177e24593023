"""AutoDrop against a numpy restatement of the authors' loop.

The problem: 100-d noisy least squares (500 rows, features scaled by
1/sqrt(100), unit label noise), batches of 10, 50 steps an epoch, 150 epochs,
SGD with momentum 0.9 at 0.05. The parameters are a dict of two leaves, so
"all parameters flattened into one vector" is exercised.

The numpy side replays the official per-epoch loop (github
yunfei-teng/AutoDrop, codes/models.py, `train_one_iteration`) in float64 on
the trajectory the transform produced, with the momentum updates recorded
before AutoDrop scales them; it predicts every angle, every drop, the scale
and threshold after each epoch, each emitted update and the averaged
parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plrs_jax

DIM, STEPS_PER_EPOCH, EPOCHS, BATCH = 100, 50, 150, 10
RATE, MOMENTUM = 0.05, 0.9
SPLIT = 60  # the leaves: 60 and 40 coordinates

# Angles: float32 dot products of 100 terms carry a relative error of at most
# about 100 * 2**-24 = 6e-6, so the cosine is off by at most ~1e-5 and the
# angle by 1e-5 / sin(w) radians: under 5e-3 degrees for w in [10, 170]
# (checked below). A decision |w_e - w_{e-1}| < threshold can therefore only
# differ between the two sides when it is within 2 * ANGLE_ATOL of the
# threshold; the test checks that none is.
ANGLE_ATOL = 5e-3
# Parameters are of size ~1: a float32 weighted sum of 20 snapshots (weights
# up to 20, divided by 210) and the p + (a - p) landing carry ~20 roundings
# of 6e-8 of |x|, under 1e-5.
PARAM_ATOL = 1e-5


def problem(seed=0):
  rng = np.random.default_rng(seed)
  rows = STEPS_PER_EPOCH * BATCH
  a = (rng.normal(size=(rows, DIM)) / np.sqrt(DIM)).astype(np.float32)
  b = (a @ rng.normal(size=DIM) + rng.normal(size=rows)).astype(np.float32)
  minimiser = np.linalg.lstsq(a.astype(np.float64), b.astype(np.float64),
                              rcond=None)[0]
  batches = np.stack([rng.permutation(rows).reshape(STEPS_PER_EPOCH, BATCH)
                      for _ in range(EPOCHS)]).reshape(-1, BATCH)
  return a, b, minimiser, batches


def split(w):
  return {'first': w[:SPLIT], 'second': w[SPLIT:]}


def flat(tree):
  return np.concatenate([np.asarray(tree['first']),
                         np.asarray(tree['second'])], axis=-1)


def train(autodrop, seed=0):
  """Runs SGD then `autodrop` (None: constant rate); records every step."""
  a, b, minimiser, batches = problem(seed)
  a, b = jnp.asarray(a), jnp.asarray(b)
  sgd = optax.sgd(RATE, momentum=MOMENTUM)

  def loss(params, rows):
    return 0.5 * jnp.mean((a[rows] @ flat_jnp(params) - b[rows]) ** 2)

  @jax.jit
  def run(params):
    def step(carry, rows):
      params, sgd_state, drop_state = carry
      momentum_update, sgd_state = sgd.update(jax.grad(loss)(params, rows),
                                              sgd_state, params)
      update, drop_state = (
          (momentum_update, drop_state) if autodrop is None
          else autodrop.update(momentum_update, drop_state, params))
      params = optax.apply_updates(params, update)
      return (params, sgd_state, drop_state), (params, momentum_update,
                                               update, drop_state)
    init = (params, sgd.init(params),
            None if autodrop is None else autodrop.init(params))
    return jax.lax.scan(step, init, batches)[1]

  params, momentum_updates, updates, states = run(split(jnp.zeros(DIM)))
  return (flat(params), flat(momentum_updates), flat(updates), states,
          minimiser)


def flat_jnp(tree):
  return jnp.concatenate([tree['first'], tree['second']])


def official_loop(positions, momentum_updates, *, threshold, drop_factor=0.2,
                  max_threshold=1.0, min_scale=0.0, window=20):
  """The authors' per-epoch loop, in float64, on a recorded trajectory.

  Args:
    positions: (steps, dim) parameters after each update.
    momentum_updates: (steps, dim) the optimizer's updates before scaling.
    threshold, drop_factor, max_threshold, min_scale, window: AutoDrop's.

  Returns:
    A dict of per-epoch arrays (angle, threshold and scale after the epoch,
    dropped) and per-step expected emitted updates.
  """
  positions = positions.astype(np.float64)
  momentum_updates = momentum_updates.astype(np.float64)
  snapshots, angles = [], []
  saturated, k, total, scale = False, 0, 0.0, 1.0
  diffs = []
  out = {'angle': [], 'threshold': [], 'scale': [], 'dropped': [],
         'average': {}}
  emitted = np.empty_like(momentum_updates)
  for epoch in range(EPOCHS):
    first, second = epoch * STEPS_PER_EPOCH, epoch * STEPS_PER_EPOCH + 1
    start = epoch * STEPS_PER_EPOCH
    emitted[start] = scale * momentum_updates[start]
    x = positions[first]                     # after the epoch's 1st update
    after = x + scale * momentum_updates[second]   # after its 2nd update
    emitted[second] = scale * momentum_updates[second]
    snapshots = (snapshots + [x])[-3:]
    angle, dropped = np.nan, False
    if len(snapshots) == 3:
      s_now, s_before = snapshots[2] - snapshots[1], snapshots[1] - snapshots[0]
      cosine = s_now @ s_before / (np.linalg.norm(s_now)
                                   * np.linalg.norm(s_before) + 1e-8)
      angle = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
      angles.append(angle)
      if len(angles) >= 2:
        diff = angles[-1] - angles[-2]
        diffs.append((abs(diff), threshold))
        saturated = saturated or (-threshold < diff < threshold)
        if saturated:
          k += 1
          total = total + k * after
          if k == window:
            threshold = min(threshold / drop_factor, max_threshold)
            scale = max(drop_factor * scale, min_scale)
            average = total / (window * (window + 1) / 2)
            out['average'][epoch] = average
            emitted[second] = average - x
            saturated, k, total, dropped = False, 0, 0.0, True
    out['angle'].append(angle)
    out['threshold'].append(threshold)
    out['scale'].append(scale)
    out['dropped'].append(dropped)
    rest = slice(second + 1, start + STEPS_PER_EPOCH)
    emitted[rest] = scale * momentum_updates[rest]
  out['emitted'] = emitted
  out['diffs'] = diffs
  return {k: (v if k in ('average', 'diffs') else np.asarray(v))
          for k, v in out.items()}


def per_epoch(states, field):
  """A state field after each epoch's measuring update (count % N == 1)."""
  return np.asarray(getattr(states, field))[1::STEPS_PER_EPOCH]


@pytest.fixture(scope='module')
def autodrop_run():
  autodrop = plrs_jax.scale_by_autodrop(STEPS_PER_EPOCH, threshold=1.0)
  positions, momentum_updates, updates, states, minimiser = train(autodrop)
  expected = official_loop(positions, momentum_updates, threshold=1.0)
  return positions, updates, states, minimiser, expected


def test_angular_velocities_match_the_official_loop(autodrop_run):
  _, _, states, _, expected = autodrop_run
  angles = per_epoch(states, 'angular_velocity')
  assert np.isnan(angles[:2]).all() and np.isnan(expected['angle'][:2]).all()
  finite = expected['angle'][2:]
  assert ((finite > 10) & (finite < 170)).all(), 'tolerance assumes this'
  np.testing.assert_allclose(angles, expected['angle'], rtol=0,
                             atol=ANGLE_ATOL)
  # No saturation test sits so close to its threshold that float32 rounding
  # could decide it.
  margins = [abs(diff - threshold) for diff, threshold in expected['diffs']]
  assert min(margins) > 2 * ANGLE_ATOL


def test_drops_scale_and_threshold_match_the_official_loop(autodrop_run):
  _, updates, states, _, expected = autodrop_run
  drops = per_epoch(states, 'num_drops')
  np.testing.assert_array_equal(np.diff(drops, prepend=0),
                                expected['dropped'].astype(int))
  np.testing.assert_allclose(per_epoch(states, 'scale'), expected['scale'],
                             rtol=1e-6)
  np.testing.assert_allclose(per_epoch(states, 'threshold'),
                             expected['threshold'], rtol=1e-6)
  # Every update: the momentum update times the scale, or the landing.
  np.testing.assert_allclose(updates, expected['emitted'], rtol=1e-5,
                             atol=PARAM_ATOL)
  # Drops come window - 1 = 19 epochs after saturation: at least 22 apart.
  dropped_epochs = np.flatnonzero(expected['dropped'])
  assert len(dropped_epochs) >= 2
  assert (np.diff(dropped_epochs) >= 20).all()


def test_a_drop_lands_on_the_weighted_average(autodrop_run):
  positions, _, _, _, expected = autodrop_run
  assert expected['average']
  for epoch, average in expected['average'].items():
    landed = positions[epoch * STEPS_PER_EPOCH + 1]
    np.testing.assert_allclose(landed, average, rtol=0, atol=PARAM_ATOL)
    # The check can fail: the last snapshot is far from the average.
    assert np.abs(positions[epoch * STEPS_PER_EPOCH] - average).max() > 100 * (
        PARAM_ATOL)


def test_drops_several_times_and_ends_closer_than_constant_sgd(autodrop_run):
  positions, _, states, minimiser, _ = autodrop_run
  constant, *_ = train(None)
  autodrop_distance = np.linalg.norm(positions[-1] - minimiser)
  constant_distance = np.linalg.norm(constant[-1] - minimiser)
  assert int(np.asarray(states.num_drops)[-1]) >= 2
  # Measured: 0.020 against 0.234. A tenth of the rate shrinks the
  # stationary noise of SGD by about sqrt(10); a factor 4 leaves room.
  assert autodrop_distance < constant_distance / 4


def test_official_threshold_never_fires_on_least_squares():
  """Why the tests above use 1 degree: the docstring's claim."""
  autodrop = plrs_jax.scale_by_autodrop(STEPS_PER_EPOCH)
  *_, states, _ = train(autodrop)
  assert int(np.asarray(states.num_drops)[-1]) == 0
  assert (np.asarray(states.scale) == 1).all()


def test_autodrop_sgd_is_momentum_sgd_then_autodrop():
  """The recipe's updates equal SGD's, scaled, with the floor as min_scale."""
  tx = plrs_jax.autodrop_sgd(0.05, 10, weight_decay=5e-4,
                             min_learning_rate=0.01)
  params = jnp.array([1.0, -2.0])
  state = tx.init(params)
  grads = jnp.array([0.5, 0.25])
  updates, state = tx.update(grads, state, params)
  # PyTorch SGD's first step: buffer = g + wd * p, update = -lr * buffer.
  np.testing.assert_allclose(updates, -0.05 * (grads + 5e-4 * params),
                             rtol=1e-6)
  autodrop_state = state[-1]
  assert isinstance(autodrop_state, plrs_jax.AutoDropState)
  assert float(autodrop_state.scale) == 1.0


def test_min_scale_floors_the_scale():
  autodrop = plrs_jax.scale_by_autodrop(STEPS_PER_EPOCH, threshold=1.0,
                                        min_scale=0.1)
  positions, momentum_updates, _, states, _ = train(autodrop)
  expected = official_loop(positions, momentum_updates, threshold=1.0,
                           min_scale=0.1)
  assert expected['scale'].min() == 0.1
  np.testing.assert_allclose(per_epoch(states, 'scale'), expected['scale'],
                             rtol=1e-6)


@pytest.mark.parametrize('kwargs, message', [
    (dict(steps_per_epoch=1), '`steps_per_epoch` must be an int'),
    (dict(drop_factor=1.0), '`drop_factor` must be in'),
    (dict(drop_factor=0.0), '`drop_factor` must be'),
    (dict(threshold=-1.0), '`threshold` must be'),
    (dict(threshold=2.0), '`threshold` must be <= `max_threshold`'),
    (dict(min_scale=1.5), '`min_scale` must be in'),
    (dict(window_epochs=0), r'`window_epochs` must be an int in \[1,'),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises((TypeError, ValueError), match=message):
    plrs_jax.scale_by_autodrop(**{'steps_per_epoch': 10, **kwargs})


@pytest.mark.parametrize('kwargs, message', [
    (dict(learning_rate=0.0), '`learning_rate` must be'),
    (dict(momentum=1.0), '`momentum` must be in'),
    (dict(min_learning_rate=0.5), '`min_learning_rate` must be <='),
])
def test_recipe_bad_arguments(kwargs, message):
  with pytest.raises((TypeError, ValueError), match=message):
    plrs_jax.autodrop_sgd(**{'learning_rate': 0.1, 'steps_per_epoch': 10,
                             **kwargs})


def test_update_without_params_is_refused():
  tx = plrs_jax.scale_by_autodrop(10)
  with pytest.raises(ValueError, match='needs `params`'):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_pmap_on_four_devices_matches_one_device():
  """A threshold of 180 degrees saturates at once: with K = 1 every epoch
  from the fourth drops, so drops and averaging both run under pmap."""
  steps_per_epoch, epochs, rows_per_step = 10, 6, 8  # 2 rows a device
  autodrop = plrs_jax.scale_by_autodrop(
      steps_per_epoch, threshold=180.0, max_threshold=180.0, window_epochs=1)
  tx = optax.chain(optax.sgd(RATE, momentum=MOMENTUM), autodrop)
  a, b, _, batches = problem()
  batches = batches[:steps_per_epoch * epochs, :rows_per_step]
  a, b = jnp.asarray(a), jnp.asarray(b)

  def step(carry, rows, mean=lambda g: g):
    params, state = carry
    grads = jax.grad(lambda p: 0.5 * jnp.mean(
        (a[rows] @ flat_jnp(p) - b[rows]) ** 2))(params)
    updates, state = tx.update(mean(grads), state, params)
    return optax.apply_updates(params, updates), state

  params = split(jnp.zeros(DIM))
  single = (params, tx.init(params))
  jitted = jax.jit(step)
  for rows in batches:
    single = jitted(single, rows)

  p_step = jax.pmap(
      lambda carry, rows: step(carry, rows,
                               lambda g: jax.lax.pmean(g, 'devices')),
      axis_name='devices', devices=jax.devices()[:4])
  replicated = jax.tree.map(lambda x: jnp.stack([x] * 4),
                            (params, tx.init(params)))
  for rows in batches:
    replicated = p_step(replicated, rows.reshape(4, -1))
  for i in range(1, 4):  # pmap returns device 0's copy: check they agree
    jax.tree.map(np.testing.assert_array_equal,
                 jax.tree.map(lambda x, i=i: x[i], replicated),
                 jax.tree.map(lambda x: x[0], replicated))
  device_params, (_, device_state) = jax.tree.map(lambda x: x[0], replicated)
  assert int(device_state.num_drops) == int(single[1][1].num_drops) == 3
  np.testing.assert_allclose(float(device_state.scale), 0.2**3, rtol=1e-6)
  # The mean of 8 rows taken as 4 means of 2 differs by float32
  # reassociation only: ~1e-7 a step, over 60 steps of a contraction.
  np.testing.assert_allclose(flat(device_params), flat(single[0]), rtol=1e-4,
                             atol=1e-6)
