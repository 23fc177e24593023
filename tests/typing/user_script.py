"""A user's script, written against optax's own signatures.

Every schedule of plrs_jax goes where optax takes a schedule, every
transformation where optax takes one, and the states are read back as a user
reads optax's. pyright and mypy must accept it with the settings at the root
of the repository, and it must run: tests/test_typing.py does both.
"""

from collections.abc import Iterator
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

import plrs_jax

STEPS = 3

Params = dict[str, jax.Array]
Batch = tuple[jax.Array, jax.Array]


def loss_fn(params: Params, batch: Batch) -> jax.Array:
  inputs, targets = batch
  return jnp.mean((inputs @ params['w'] - targets) ** 2)


def make_batch() -> Batch:
  inputs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
  return jnp.asarray(inputs), jnp.asarray(inputs @ np.arange(4.0))


def train(tx: optax.GradientTransformation, steps: int = STEPS,
          compiled: bool = True) -> tuple[optax.Params, optax.OptState]:
  """Steps of `tx`, given the loss where it takes extra arguments."""

  def step(params: optax.Params, state: optax.OptState
           ) -> tuple[optax.Params, optax.OptState]:
    loss, grads = jax.value_and_grad(loss_fn)(params, make_batch())
    if isinstance(tx, optax.GradientTransformationExtraArgs):
      updates, state = tx.update(grads, state, params, loss=loss)
    else:
      updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  run = jax.jit(step) if compiled else step
  params: optax.Params = {'w': jnp.zeros(4)}
  state = tx.init(params)
  for _ in range(steps):
    params, state = run(params, state)
  return params, state


def schedules() -> dict[str, optax.Schedule]:
  """Every schedule, where a dict of optax schedules is declared."""
  key = jax.random.key(0)
  return {
      'plrs': plrs_jax.plrs_schedule(key, 0.07, 0.1),
      'plrs_annealed': plrs_jax.plrs_schedule(
          key, optax.linear_schedule(0.05, 0.0, 10), 0.1, hold_steps=2),
      'constant': plrs_jax.constant_schedule(0.1),
      'multistep': plrs_jax.multistep_schedule(0.1, [2, 4]),
      'cosine_warm_restarts': plrs_jax.cosine_warm_restarts_schedule(
          0.1, decay_steps=2, period_multiplier=2),
      'knee': plrs_jax.knee_schedule(0.1, 1, 2, 10),
      'one_cycle': plrs_jax.one_cycle_schedule(0.1, 10),
      'cyclic_triangular': plrs_jax.cyclic_triangular_schedule(0.01, 0.1, 2),
      'linear_decay': plrs_jax.warmup_linear_decay_schedule(
          peak_value=0.1, total_steps=10),
      'cosine': plrs_jax.warmup_cosine_schedule(peak_value=0.1,
                                                total_steps=10),
      'wsd': plrs_jax.warmup_stable_decay_schedule(peak_value=0.1,
                                                   total_steps=10),
      'plrs_linear_decay': plrs_jax.plrs_linear_decay_schedule(
          key, peak_value=0.1, total_steps=10),
      'plrs_wsd': plrs_jax.plrs_wsd_schedule(key, peak_value=0.1,
                                             total_steps=10),
      'by_name': plrs_jax.create_schedule('knee', peak_value=0.1,
                                          warmup_steps=0, explore_steps=2,
                                          total_steps=10),
  }


def use_schedules() -> None:
  # The two calls of the README, one by one.
  schedule = plrs_jax.plrs_schedule(jax.random.key(0), 0.07, 0.1)
  train(optax.sgd(schedule))
  warm = optax.join_schedules([optax.linear_schedule(0.0, 0.1, 100), schedule],
                              [100])
  train(optax.sgd(warm))
  noise: jax.Array = schedule.noise(3)
  assert abs(float(noise)) <= 0.015 + 1e-7

  # One eager step of each optimizer: compiling 70 of them takes longer.
  for name, each in schedules().items():
    rate = each(jnp.int32(2))
    assert 0 <= float(jnp.asarray(rate)) <= 0.1 + 1e-6, (name, rate)
    joined = optax.join_schedules([optax.constant_schedule(0.01), each], [1])
    for tx in (optax.sgd(each, momentum=0.9),
               optax.adamw(each, weight_decay=1e-4),
               optax.sgd(joined),
               optax.contrib.schedule_free(optax.sgd(each), each)):
      train(tx, steps=1, compiled=False)
    _, state = train(optax.inject_hyperparams(optax.sgd)(learning_rate=each),
                     steps=1, compiled=False)
    logged = optax.tree.get(state, 'hyperparams')['learning_rate']
    np.testing.assert_allclose(logged, each(0), rtol=1e-6)

  # The momentum schedule, where optax takes any hyperparameter's schedule.
  momentum = plrs_jax.cyclic_momentum_schedule(0.8, 0.9, up_steps=2)
  train(optax.inject_hyperparams(optax.sgd)(
      learning_rate=plrs_jax.cyclic_triangular_schedule(0.01, 0.1, 2),
      momentum=momentum))


def use_transforms() -> None:
  autodrop = optax.chain(optax.sgd(0.1, momentum=0.9),
                         plrs_jax.scale_by_autodrop(steps_per_epoch=2))
  _, state = train(autodrop)
  drops = optax.tree.get(state, 'num_drops')
  assert int(drops) == 0
  assert isinstance(state, tuple)
  autodrop_state = state[1]
  assert isinstance(autodrop_state, plrs_jax.AutoDropState)
  assert int(autodrop_state.count) == STEPS
  scale: jax.Array = autodrop_state.scale
  assert 0 < float(scale) <= 1

  _, state = train(optax.chain(optax.clip_by_global_norm(1.0),
                               plrs_jax.autodrop_sgd(0.05, steps_per_epoch=2)))
  assert float(optax.tree.get(state, 'threshold')) > 0

  two_regime = plrs_jax.two_regime(optax.sgd(0.1), optax.adam(0.01),
                                   switch_step=2)
  _, state = train(optax.chain(optax.add_decayed_weights(1e-4), two_regime))
  assert int(optax.tree.get(state, 'regime')) == 1
  _, state = train(optax.chain(
      plrs_jax.two_regime_sgd_adam(plrs_jax.constant_schedule(0.1), 0.01, 1)))
  regime_state = state[0] if isinstance(state, tuple) else state
  assert isinstance(regime_state, plrs_jax.TwoRegimeState)

  net = plrs_jax.mlr_snet_init(0)
  kernel: jax.Array = net['head']['kernel']
  assert kernel.shape == (50, 1)
  gamma = plrs_jax.mlr_snet_gamma(2.3, num_classes=10)
  _, state = train(optax.chain(optax.add_decayed_weights(5e-4),
                               plrs_jax.mlr_snet(net, gamma=gamma)))
  rate = optax.tree.get(state, 'rate')
  assert 0 < float(rate) < float(gamma)
  zeros = jnp.zeros(50)
  (h, _), fraction = plrs_jax.mlr_snet_cell(net, (zeros, zeros), 2.3)
  assert h.shape == (50,) and 0 < float(fraction) < 1


def use_bounds() -> None:
  batches: Iterator[Batch] = itertools.repeat(make_batch())
  result = plrs_jax.lr_range_test(loss_fn, {'w': jnp.zeros(4)}, batches,
                                  min_lr=1e-3, max_lr=10.0, num_steps=20,
                                  optimizer=optax.sgd)
  low, high = plrs_jax.suggest_bounds(result.learning_rates, result.losses)
  schedule: optax.Schedule = plrs_jax.plrs_schedule(0, low, high)
  train(optax.sgd(schedule))
  eigen = plrs_jax.top_hessian_eigenvalue(
      lambda p: loss_fn(p, make_batch()), {'w': jnp.zeros(4)}, key=0)
  check = plrs_jax.check_bounds(high, eigen.eigenvalue)
  assert isinstance(check.explanation, str)


def main() -> None:
  use_schedules()
  use_transforms()
  use_bounds()


if __name__ == '__main__':
  main()
