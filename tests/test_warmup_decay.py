"""Today's schedules against their closed forms in numpy (Hagele et al.'s
cooldown shapes, with the module's step convention written out here); the
PLRS variants against the draw restated: u_t = uniform(fold_in(key, t)) scaled
into the envelope."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plrs_jax

T, PEAK, END = 200, 0.3, 0.02
STEPS = np.arange(T + 20)
SHAPES = ('linear', 'cosine', '1-sqrt')
WSD = (plrs_jax.warmup_stable_decay_schedule, plrs_jax.plrs_wsd_schedule)


def _rates(schedule, steps=STEPS):
  return np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps)),
                    np.float64)


def _eager(schedule, steps):
  """One call per step, outside jit (a Python int count)."""
  return np.array([float(schedule(int(t))) for t in steps])


def _envelope(t, warmup, decay_start, shape='linear', peak=PEAK, end=0.0,
              total=T):
  """Hagele et al.'s shapes with p = 0 at the decay's first step (still the
  peak) and p = 1 at `total` (the end value, and from then on)."""
  t = np.asarray(t, np.float64)
  up = peak * t / max(warmup, 1)
  if decay_start == total:  # No decay: the peak from the warmup's end on.
    return np.where(t < warmup, up, peak)
  p = np.clip((t - decay_start) / (total - decay_start), 0, 1)
  left = {'linear': 1 - p, 'cosine': (1 + np.cos(np.pi * p)) / 2,
          '1-sqrt': 1 - np.sqrt(p)}[shape]
  return np.where(t < warmup, up, end + (peak - end) * left)


def _uniform(key, counts):
  return np.asarray(jax.vmap(lambda c: jax.random.uniform(
      jax.random.fold_in(key, c), (), jnp.float32))(jnp.asarray(counts)),
                    np.float64)


@pytest.mark.parametrize('kwargs,warmup', [
    (dict(warmup_fraction=0.0), 0), (dict(), 10),
    (dict(warmup_fraction=0.3), 60), (dict(warmup_steps=7), 7),
    (dict(warmup_steps=7, end_value=END), 7)])
def test_linear_decay_is_the_closed_form(kwargs, warmup):
  got = _rates(plrs_jax.warmup_linear_decay_schedule(PEAK, T, **kwargs))
  expected = _envelope(STEPS, warmup, warmup, 'linear',
                       end=kwargs.get('end_value', 0.0))
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('kwargs,warmup', [
    (dict(), 10), (dict(warmup_fraction=0.0), 0),
    (dict(warmup_steps=33, end_value=END), 33)])
def test_cosine_is_the_closed_form(kwargs, warmup):
  got = _rates(plrs_jax.warmup_cosine_schedule(PEAK, T, **kwargs))
  expected = _envelope(STEPS, warmup, warmup, 'cosine',
                       end=kwargs.get('end_value', 0.0))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('kwargs,warmup,decay_start', [
    (dict(), 10, 160),
    (dict(warmup_fraction=0.1, decay_fraction=0.9), 20, 20),
    (dict(warmup_steps=13, decay_steps=47), 13, T - 47),
    (dict(warmup_fraction=0.0, decay_steps=T), 0, 0),
    (dict(warmup_steps=5, decay_fraction=0.25, end_value=END), 5, 150)])
def test_wsd_is_the_closed_form(shape, kwargs, warmup, decay_start):
  got = _rates(plrs_jax.warmup_stable_decay_schedule(
      PEAK, T, decay_shape=shape, **kwargs))
  expected = _envelope(STEPS, warmup, decay_start, shape,
                       end=kwargs.get('end_value', 0.0))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def _boundaries(warmup, decay_start):
  """The first and last step of each phase, the run's end and past it."""
  steps = {0, warmup - 1, warmup, warmup + 1, decay_start - 1, decay_start,
           decay_start + 1, T - 1, T, T + 1, T + 1000, 2**31 - 1}
  return np.array(sorted(t for t in steps if t >= 0))


def _wsd(factory, *args, **kwargs):
  """`factory` of WSD's arguments; plrs_wsd at ratio 1, which draws the
  peak, so that its stable phase is WSD's."""
  if factory is plrs_jax.plrs_wsd_schedule:
    return factory(0, *args, 1.0, **kwargs)
  return factory(*args, **kwargs)


@pytest.mark.parametrize('factory', WSD)
@pytest.mark.parametrize('shape', SHAPES)
def test_wsd_at_each_phase_boundary_eager_and_jitted(factory, shape):
  schedule = _wsd(factory, PEAK, T, warmup_steps=10, decay_steps=40,
                  decay_shape=shape, end_value=END)
  steps = _boundaries(10, 160)
  expected = _envelope(steps, 10, 160, shape, end=END)
  for got in _rates(schedule, steps), _eager(schedule, steps):
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    at = dict(zip(steps.tolist(), got))
    # Exact where the convention says so: 0 at the start, the peak from the
    # warmup's end to the decay's first step, the end value from T on.
    assert at[0] == 0
    assert at[10] == at[159] == at[160] == np.float32(PEAK)
    assert at[161] < at[160] and at[T - 1] > np.float32(END)
    assert at[T] == at[T + 1] == at[T + 1000] == at[2**31 - 1] == np.float32(
        END)


@pytest.mark.parametrize('factory,kwargs', [
    (plrs_jax.warmup_linear_decay_schedule, {}),
    (plrs_jax.warmup_cosine_schedule, {}),
    (plrs_jax.warmup_stable_decay_schedule, dict(decay_shape='cosine')),
    (plrs_jax.warmup_stable_decay_schedule, dict(decay_shape='1-sqrt'))])
def test_the_run_ends_at_exactly_zero_eager_and_jitted(factory, kwargs):
  # Lengths whose last decay step XLA's division leaves a few ulps off.
  for total in (137, 1000, 1170, 3901):
    schedule = factory(PEAK, total, **kwargs)
    past = np.array([total, total + 1, total + 10**6])
    assert (_rates(schedule, past) == 0).all()
    assert (_eager(schedule, past) == 0).all()


@pytest.mark.parametrize('factory,kwargs,warmup', [
    (plrs_jax.warmup_stable_decay_schedule, dict(decay_fraction=0.0), 10),
    (plrs_jax.warmup_stable_decay_schedule,
     dict(decay_steps=0, decay_shape='1-sqrt', end_value=END), 10),
    (plrs_jax.plrs_wsd_schedule, dict(decay_steps=0, end_value=END), 10),
    (plrs_jax.warmup_linear_decay_schedule, dict(warmup_fraction=1.0), T),
    (plrs_jax.warmup_cosine_schedule, dict(warmup_fraction=1.0), T),
    (plrs_jax.warmup_cosine_schedule, dict(warmup_steps=T, end_value=END),
     T)])
def test_a_decay_of_zero_length_is_a_constant(factory, kwargs, warmup):
  schedule = _wsd(factory, PEAK, T, **kwargs)
  steps = np.array([0, warmup - 1, warmup, T - 1, T, T + 1, 2**31 - 1])
  expected = _envelope(steps, warmup, T)
  for got in _rates(schedule, steps), _eager(schedule, steps):
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert (got[steps >= warmup] == np.float32(PEAK)).all()


def test_a_warmup_of_zero_length_starts_at_the_peak():
  for factory in (plrs_jax.warmup_linear_decay_schedule,
                  plrs_jax.warmup_cosine_schedule,
                  plrs_jax.warmup_stable_decay_schedule):
    schedule = factory(PEAK, T, warmup_steps=0)
    assert _eager(schedule, [0]) == np.float32(PEAK)


def test_fractions_round_the_boundaries_so_phases_never_overlap():
  # 7 steps, half warmup and half decay: a warmup of 4 steps (round(3.5) =
  # 4) and a decay from step round(7 - 3.5) = 4 on, so step 3 is 0.75 of the
  # peak; rounding both lengths up would have started the decay at step 3.
  got = _rates(plrs_jax.warmup_stable_decay_schedule(1.0, 7, 0.5, 0.5),
               np.arange(9))
  np.testing.assert_allclose(
      got, [0, 0.25, 0.5, 0.75, 1, 2 / 3, 1 / 3, 0, 0], rtol=1e-6,
      atol=1e-7)
  fractions = (0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0)
  for total in (1, 2, 3, 5, 7, 10, 13):
    for warmup_fraction in fractions:
      for decay_fraction in (f for f in fractions
                             if warmup_fraction + f <= 1):
        schedule = plrs_jax.warmup_stable_decay_schedule(
            1.0, total, warmup_fraction, decay_fraction)
        warmup = round(warmup_fraction * total)
        decay_start = round(total - decay_fraction * total)
        assert warmup <= decay_start
        steps = np.arange(total + 2)
        np.testing.assert_allclose(
            np.asarray(jax.vmap(schedule)(steps)),
            _envelope(steps, warmup, decay_start, peak=1.0, total=total),
            rtol=1e-6, atol=1e-7, err_msg=str((total, warmup_fraction,
                                               decay_fraction)))


def test_default_arguments_are_the_study_s_optax_schedules_bit_for_bit():
  # What the study ran: optax's linear pieces and warmup cosine joined at
  # round(0.05 T) and round(0.8 T), bit for bit within the run.
  for total in (390, 1170, 3901):
    warmup, decay = round(0.05 * total), round(0.8 * total)
    pieces = {
        'wsd': optax.join_schedules(
            [optax.linear_schedule(0.0, PEAK, warmup),
             optax.constant_schedule(PEAK),
             optax.linear_schedule(PEAK, 0.0, total - decay)],
            [warmup, decay]),
        'linear_decay': optax.join_schedules(
            [optax.linear_schedule(0.0, PEAK, warmup),
             optax.linear_schedule(PEAK, 0.0, total - warmup)], [warmup]),
        'cosine': optax.warmup_cosine_decay_schedule(0.0, PEAK, warmup,
                                                     total),
    }
    steps = np.arange(total)
    for name, reference in pieces.items():
      ours = plrs_jax.create_schedule(name, peak_value=PEAK,
                                      total_steps=total)
      np.testing.assert_array_equal(_rates(ours, steps),
                                    _rates(reference, steps), err_msg=name)


def test_plrs_linear_decay_draws_u_inside_the_annealed_envelope():
  key = jax.random.key(3)
  got = _rates(plrs_jax.plrs_linear_decay_schedule(key, PEAK, T, 0.7))
  high = _envelope(STEPS, 10, 10)
  expected = 0.7 * high + _uniform(key, STEPS) * 0.3 * high
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
  assert (got <= high * (1 + 1e-6)).all() and (got >= 0.7 * high - 1e-7).all()
  # Past the run's end the rate stays 0 (the envelope's end, never below).
  assert (got[STEPS >= T] == 0).all()


def test_plrs_linear_decay_ends_in_the_end_value_s_envelope():
  key = jax.random.key(4)
  got = _rates(plrs_jax.plrs_linear_decay_schedule(
      key, PEAK, T, 0.5, warmup_steps=20, end_value=END))
  high = _envelope(STEPS, 20, 20, end=END)
  expected = 0.5 * high + _uniform(key, STEPS) * 0.5 * high
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('shape', SHAPES)
def test_plrs_wsd_draws_in_the_stable_phase_only(shape):
  key = jax.random.key(5)
  got = _rates(plrs_jax.plrs_wsd_schedule(key, PEAK, T, 0.5, 0.05, 0.2,
                                          decay_shape=shape))
  warmup, decay = 10, T - 40
  stable = (STEPS >= warmup) & (STEPS < decay)
  drawn = 0.5 * PEAK + _uniform(key, STEPS - warmup) * 0.5 * PEAK
  expected = np.where(stable, drawn, _envelope(STEPS, warmup, decay, shape))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
  # The stable phase's rates are random (not one value) and within bounds.
  assert np.ptp(got[stable]) > 0.1 * PEAK
  assert got[stable].min() >= 0.5 * PEAK and got[stable].max() <= PEAK


@pytest.mark.parametrize('shape', SHAPES)
def test_wsd_with_a_stable_value_below_the_peak(shape):
  got = _rates(plrs_jax.warmup_stable_decay_schedule(
      PEAK, T, decay_shape=shape, end_value=END, stable_value=0.6 * PEAK))
  stable = (STEPS >= 10) & (STEPS < 160)
  expected = np.where(stable, 0.6 * PEAK,
                      _envelope(STEPS, 10, 160, shape, end=END))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_plrs_wsd_s_mean_is_wsd_at_the_mean_stable_value():
  # 400 keys: the mean of U[0.7, 1] PEAK has standard error
  # 0.3 PEAK / sqrt(12 * 400) per step; 5 of them over 150 steps fails with
  # probability below 1e-4.
  rates = np.asarray(jax.jit(jax.vmap(lambda key: jax.vmap(
      plrs_jax.plrs_wsd_schedule(key, PEAK, T))(jnp.asarray(STEPS))))(
          jax.random.split(jax.random.key(0), 400)), np.float64)
  twin = _rates(plrs_jax.warmup_stable_decay_schedule(
      PEAK, T, stable_value=0.85 * PEAK))
  bound = 5 * 0.3 * PEAK / np.sqrt(12 * 400)
  np.testing.assert_allclose(rates.mean(0), twin, rtol=0, atol=bound)
  stable = (STEPS >= 10) & (STEPS < 160)
  np.testing.assert_allclose(rates[:, ~stable],
                             np.broadcast_to(twin, rates.shape)[:, ~stable],
                             rtol=1e-6)


@pytest.mark.parametrize('factory,kwargs,match', [
    (plrs_jax.warmup_linear_decay_schedule, dict(peak_value=0.0), 'peak'),
    (plrs_jax.warmup_cosine_schedule, dict(warmup_fraction=1.5), 'warmup'),
    (plrs_jax.warmup_cosine_schedule, dict(warmup_steps=101),
     'warmup_steps=101 > total_steps=100'),
    (plrs_jax.warmup_linear_decay_schedule, dict(end_value=0.2), 'end_value'),
    (plrs_jax.warmup_stable_decay_schedule,
     dict(warmup_fraction=0.5, decay_fraction=0.6), 'fit in the run'),
    (plrs_jax.warmup_stable_decay_schedule,
     dict(warmup_steps=50, decay_steps=51), 'warmup_steps=50 and decay_steps'),
    (plrs_jax.warmup_stable_decay_schedule,
     dict(warmup_fraction=0.5, decay_steps=51),
     'warmup_fraction=0.5 and decay_steps=51'),
    (plrs_jax.warmup_stable_decay_schedule, dict(decay_fraction=-0.1),
     'decay_fraction'),
    (plrs_jax.warmup_stable_decay_schedule, dict(decay_shape='sqrt'),
     'decay_shape.*1-sqrt'),
    (plrs_jax.warmup_stable_decay_schedule, dict(total_steps=0),
     'total_steps'),
    (plrs_jax.warmup_stable_decay_schedule, dict(stable_value=0.2),
     'stable_value=0.2 and peak_value=0.1'),
    (plrs_jax.warmup_stable_decay_schedule, dict(stable_value=-0.01),
     'stable_value'),
])
def test_bad_arguments_say_which(factory, kwargs, match):
  with pytest.raises(ValueError, match=match):
    factory(**{'peak_value': 0.1, 'total_steps': 100, **kwargs})


@pytest.mark.parametrize('factory', [
    plrs_jax.warmup_linear_decay_schedule, plrs_jax.warmup_cosine_schedule,
    plrs_jax.warmup_stable_decay_schedule])
def test_a_duration_in_steps_and_as_a_fraction_is_refused(factory):
  with pytest.raises(ValueError, match='warmup_fraction=0.1 and warmup_steps'):
    factory(0.1, 100, warmup_fraction=0.1, warmup_steps=5)


@pytest.mark.parametrize('factory', WSD)
def test_a_decay_in_steps_and_as_a_fraction_is_refused(factory):
  with pytest.raises(ValueError, match='decay_fraction=0.2 and decay_steps'):
    _wsd(factory, 0.1, 100, decay_fraction=0.2, decay_steps=20)


def test_variants_refuse_a_ratio_above_one():
  with pytest.raises(ValueError, match='min_ratio'):
    plrs_jax.plrs_linear_decay_schedule(0, 0.1, 100, min_ratio=1.5)
  with pytest.raises(ValueError, match='min_ratio'):
    plrs_jax.plrs_wsd_schedule(0, 0.1, 100, min_ratio=-0.1)
