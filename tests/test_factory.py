"""create_schedule: every name builds the schedule its factory builds."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plrs_jax
from plrs_jax import curvature

ARGS = {
    'plrs': dict(key=0, min_value=0.07, max_value=0.1),
    'constant': dict(value=0.05),
    'multistep': dict(init_value=0.1, boundaries=[10, 20], factor=0.1),
    'cosine_warm_restarts': dict(init_value=0.1, decay_steps=8,
                                 period_multiplier=2, end_value=1e-4),
    'knee': dict(peak_value=0.1, warmup_steps=5, explore_steps=20,
                 total_steps=40),
    'one_cycle': dict(peak_value=0.1, total_steps=40, pct_start=0.45,
                      div_factor=10.0, final_div_factor=10.0),
    'cyclic_triangular': dict(init_value=0.01, peak_value=0.1, up_steps=6),
    'linear_decay': dict(peak_value=0.1, total_steps=40),
    'cosine': dict(peak_value=0.1, total_steps=40, warmup_fraction=0.1),
    'wsd': dict(peak_value=0.1, total_steps=40, decay_fraction=0.25,
                decay_shape='cosine'),
    'plrs_linear_decay': dict(key=0, peak_value=0.1, total_steps=40),
    'plrs_wsd': dict(key=0, peak_value=0.1, total_steps=40, min_ratio=0.5,
                     decay_steps=10, decay_shape='1-sqrt', end_value=0.01),
}


def test_every_known_name_is_covered():
  assert set(ARGS) == set(plrs_jax.SCHEDULES)


@pytest.mark.parametrize('name', sorted(ARGS))
def test_name_builds_the_factory_schedule(name):
  by_name = plrs_jax.create_schedule(name, **ARGS[name])
  direct = plrs_jax.SCHEDULES[name](**ARGS[name])
  steps = jnp.arange(50)
  np.testing.assert_array_equal(
      jax.jit(jax.vmap(by_name))(steps), jax.jit(jax.vmap(direct))(steps))


@pytest.mark.parametrize('name', ['wsd', 'plrs_wsd'])
@pytest.mark.parametrize('shape', ['linear', 'cosine', '1-sqrt'])
def test_wsd_cooldown_shapes_by_name_are_hagele_et_al_s(name, shape):
  # The cooldown of 40 steps ends a run of 200 at 0.01 from 0.1; its progress
  # p is 0 at step 160 and 1 at step 200.
  key = {'key': 0, 'min_ratio': 1.0} if name == 'plrs_wsd' else {}
  schedule = plrs_jax.create_schedule(
      name, peak_value=0.1, total_steps=200, decay_fraction=0.2,
      end_value=0.01, decay_shape=shape, **key)
  t = np.arange(160, 206)
  p = np.minimum((t - 160) / 40, 1)
  left = {'linear': 1 - p, 'cosine': (1 + np.cos(np.pi * p)) / 2,
          '1-sqrt': 1 - np.sqrt(p)}[shape]
  np.testing.assert_allclose(jax.jit(jax.vmap(schedule))(t),
                             0.01 + (0.1 - 0.01) * left, rtol=1e-6)


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(ValueError, match='unknown schedule .cosine_annealing.*'
                     'knee.*plrs'):
    plrs_jax.create_schedule('cosine_annealing', init_value=0.1)


def test_wrong_arguments_name_the_factory_and_the_argument():
  with pytest.raises(TypeError, match='plrs_schedule.*maximum'):
    plrs_jax.create_schedule('plrs', key=0, min_value=0.1, maximum=0.2)
  with pytest.raises(TypeError, match='knee_schedule.*total_steps'):
    plrs_jax.create_schedule('knee', peak_value=0.1)


def test_bad_values_still_reach_the_factory_checks():
  with pytest.raises(ValueError, match='min_value'):
    plrs_jax.create_schedule('plrs', key=0, min_value=0.3, max_value=0.2)


# optax's vocabulary: values named by when they apply, durations as *_steps.
OPTAX_VALUE_NAMES = {'init_value', 'peak_value', 'end_value', 'value',
                     'stable_value'}
OTHER_NAMES = {'boundaries', 'factor', 'period_multiplier', 'pct_start',
               'div_factor', 'final_div_factor', 'warmup_fraction',
               'decay_fraction', 'decay_shape'}


@pytest.mark.parametrize('name', sorted(n for n in ARGS
                                        if not n.startswith('plrs')))
def test_baselines_name_their_arguments_as_optax_does(name):
  for parameter in inspect.signature(plrs_jax.SCHEDULES[name]).parameters:
    assert (parameter in OPTAX_VALUE_NAMES | OTHER_NAMES
            or parameter.endswith('_steps')), (name, parameter)


def test_curvature_helpers_are_exported_at_top_level():
  assert plrs_jax.top_hessian_eigenvalue is curvature.top_hessian_eigenvalue
  assert plrs_jax.check_bounds is curvature.check_bounds
  assert {'top_hessian_eigenvalue', 'check_bounds'} <= set(plrs_jax.__all__)
