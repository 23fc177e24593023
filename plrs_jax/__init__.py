"""plrs_jax: probabilistic learning-rate scheduling for JAX and Optax.

PLRS (arXiv 2407.07613) draws the learning rate uniformly from
[L_min, L_max] at every step, as a pure function of (PRNG key, step).
"""

from plrs_jax import curvature
from plrs_jax._autodrop import autodrop_sgd
from plrs_jax._autodrop import AutoDropState
from plrs_jax._autodrop import scale_by_autodrop
from plrs_jax._mlr_snet import mlr_snet
from plrs_jax._mlr_snet import mlr_snet_cell
from plrs_jax._mlr_snet import mlr_snet_gamma
from plrs_jax._mlr_snet import mlr_snet_init
from plrs_jax._mlr_snet import mlr_snet_meta_loss
from plrs_jax._mlr_snet import MLRSNetState
from plrs_jax._range_test import lr_range_test
from plrs_jax._range_test import RangeTestResult
from plrs_jax._range_test import suggest_bounds
from plrs_jax._two_regime import two_regime
from plrs_jax._two_regime import two_regime_sgd_adam
from plrs_jax._two_regime import TwoRegimeState
from plrs_jax.baselines import constant_schedule
from plrs_jax.baselines import cosine_warm_restarts_schedule
from plrs_jax.baselines import cyclic_momentum_schedule
from plrs_jax.baselines import cyclic_triangular_schedule
from plrs_jax.baselines import knee_schedule
from plrs_jax.baselines import multistep_schedule
from plrs_jax.baselines import one_cycle_schedule
from plrs_jax.curvature import BoundsCheck
from plrs_jax.curvature import check_bounds
from plrs_jax.curvature import EigenvalueResult
from plrs_jax.curvature import top_hessian_eigenvalue
from plrs_jax.factory import create_schedule
from plrs_jax.factory import SCHEDULES
from plrs_jax.plrs import plrs_schedule
from plrs_jax.plrs import PLRSSchedule
from plrs_jax.warmup_decay import plrs_linear_decay_schedule
from plrs_jax.warmup_decay import plrs_wsd_schedule
from plrs_jax.warmup_decay import warmup_cosine_schedule
from plrs_jax.warmup_decay import warmup_linear_decay_schedule
from plrs_jax.warmup_decay import warmup_stable_decay_schedule

__version__ = '0.2.0'

__all__ = (
    'SCHEDULES',
    'AutoDropState',
    'BoundsCheck',
    'EigenvalueResult',
    'MLRSNetState',
    'PLRSSchedule',
    'RangeTestResult',
    'TwoRegimeState',
    'autodrop_sgd',
    'check_bounds',
    'constant_schedule',
    'cosine_warm_restarts_schedule',
    'create_schedule',
    'curvature',
    'cyclic_momentum_schedule',
    'cyclic_triangular_schedule',
    'knee_schedule',
    'lr_range_test',
    'mlr_snet',
    'mlr_snet_cell',
    'mlr_snet_gamma',
    'mlr_snet_init',
    'mlr_snet_meta_loss',
    'multistep_schedule',
    'one_cycle_schedule',
    'plrs_linear_decay_schedule',
    'plrs_schedule',
    'plrs_wsd_schedule',
    'scale_by_autodrop',
    'suggest_bounds',
    'top_hessian_eigenvalue',
    'two_regime',
    'two_regime_sgd_adam',
    'warmup_cosine_schedule',
    'warmup_linear_decay_schedule',
    'warmup_stable_decay_schedule',
)
