"""Today's schedules against their closed forms in numpy; the PLRS variants
against the draw restated: u_t = uniform(fold_in(key, t)) scaled into the
envelope."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plrs_jax

T, PEAK = 200, 0.3
STEPS = np.arange(T + 20)


def _rates(schedule):
  return np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(STEPS)),
                    np.float64)


def _linear_decay(t, warmup):
  return np.where(t < warmup, PEAK * t / max(warmup, 1),
                  PEAK * np.clip((T - t) / (T - warmup), 0, 1))


def _wsd(t, warmup, decay_start):
  up = PEAK * t / max(warmup, 1)
  down = PEAK * np.clip((T - t) / max(T - decay_start, 1), 0, 1)
  return np.where(t < warmup, up, np.where(t < decay_start, PEAK, down))


def _uniform(key, counts):
  return np.asarray(jax.vmap(lambda c: jax.random.uniform(
      jax.random.fold_in(key, c), (), jnp.float32))(jnp.asarray(counts)),
                    np.float64)


@pytest.mark.parametrize('fraction', [0.0, 0.05, 0.3])
def test_linear_decay_is_the_closed_form(fraction):
  got = _rates(plrs_jax.warmup_linear_decay_schedule(PEAK, T, fraction))
  np.testing.assert_allclose(got, _linear_decay(STEPS, round(fraction * T)),
                             rtol=1e-6, atol=1e-7)


def test_cosine_is_the_closed_form():
  warmup = 10
  got = _rates(plrs_jax.warmup_cosine_schedule(PEAK, T, 0.05))
  t = STEPS
  expected = np.where(
      t < warmup, PEAK * t / warmup,
      PEAK * 0.5 * (1 + np.cos(np.pi * np.clip((t - warmup) / (T - warmup),
                                               0, 1))))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('decay_fraction', [0.0, 0.2, 0.95])
def test_wsd_is_the_closed_form(decay_fraction):
  got = _rates(plrs_jax.warmup_stable_decay_schedule(PEAK, T, 0.05,
                                                     decay_fraction))
  decay_start = T - round(decay_fraction * T)
  # Without a decay the schedule is a warmup, then constant to the end.
  within = STEPS < decay_start if decay_start == T else STEPS >= 0
  np.testing.assert_allclose(
      got[within], _wsd(STEPS, 10, decay_start)[within], rtol=1e-6,
      atol=1e-7)


def test_plrs_linear_decay_draws_u_inside_the_annealed_envelope():
  key = jax.random.key(3)
  got = _rates(plrs_jax.plrs_linear_decay_schedule(key, PEAK, T, 0.7))
  high = _linear_decay(STEPS, 10)
  expected = 0.7 * high + _uniform(key, STEPS) * 0.3 * high
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
  assert (got <= high * (1 + 1e-6)).all() and (got >= 0.7 * high - 1e-7).all()
  # Past the run's end the rate stays 0 (the envelope's end, never below).
  assert (got[STEPS >= T] == 0).all()


def test_plrs_wsd_draws_in_the_stable_phase_only():
  key = jax.random.key(5)
  got = _rates(plrs_jax.plrs_wsd_schedule(key, PEAK, T, 0.5, 0.05, 0.2))
  warmup, decay = 10, T - 40
  stable = (STEPS >= warmup) & (STEPS < decay)
  drawn = 0.5 * PEAK + _uniform(key, STEPS - warmup) * 0.5 * PEAK
  expected = np.where(stable, drawn, _wsd(STEPS, warmup, decay))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
  # The stable phase's rates are random (not one value) and within bounds.
  assert np.ptp(got[stable]) > 0.1 * PEAK
  assert got[stable].min() >= 0.5 * PEAK and got[stable].max() <= PEAK


@pytest.mark.parametrize('factory,kwargs,match', [
    (plrs_jax.warmup_linear_decay_schedule, dict(peak_value=0.0), 'peak'),
    (plrs_jax.warmup_cosine_schedule, dict(warmup_fraction=1.5), 'warmup'),
    (plrs_jax.warmup_stable_decay_schedule,
     dict(warmup_fraction=0.5, decay_fraction=0.6), 'fit in the run'),
    (plrs_jax.warmup_stable_decay_schedule, dict(total_steps=0),
     'total_steps'),
])
def test_bad_arguments_say_which(factory, kwargs, match):
  with pytest.raises(ValueError, match=match):
    factory(**{'peak_value': 0.1, 'total_steps': 100, **kwargs})


def test_variants_refuse_a_ratio_above_one():
  with pytest.raises(ValueError, match='min_ratio'):
    plrs_jax.plrs_linear_decay_schedule(0, 0.1, 100, min_ratio=1.5)
  with pytest.raises(ValueError, match='min_ratio'):
    plrs_jax.plrs_wsd_schedule(0, 0.1, 100, min_ratio=-0.1)
