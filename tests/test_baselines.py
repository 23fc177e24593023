"""Tests of the baseline schedules against independent references.

Every reference below is written from the published formula or PyTorch's
scheduler algorithm, in plain Python float64, one step at a time; none of them
calls the module under test. When torch is importable, the schedules are also
compared with torch's own schedulers.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plrs_jax import baselines

RTOL = 1e-6
ATOL = 1e-7


def _rates(schedule, counts):
  """The jitted schedule over `counts` (an int32 vector), via vmap."""
  counts = jnp.asarray(counts, dtype=jnp.int32)
  rates = jax.jit(jax.vmap(schedule))(counts)
  assert rates.dtype == jnp.float32
  assert rates.shape == counts.shape
  return np.asarray(rates, dtype=np.float64)


def _assert_matches(schedule, expected, counts=None, int_counts=()):
  """Checks `schedule` against `expected` (a list, or a function of t)."""
  if counts is None:
    counts = list(range(len(expected)))
    expected_at = lambda t: expected[t]
  else:
    expected_at = expected
  want = np.array([expected_at(t) for t in counts], dtype=np.float64)
  np.testing.assert_allclose(
      _rates(schedule, counts), want, rtol=RTOL, atol=ATOL
  )
  # Python int counts: jitted, and eagerly.
  jitted = jax.jit(schedule)
  picks = [counts[0], counts[len(counts) // 2], counts[-1], *int_counts]
  for t in picks:
    for rate in (jitted(t), schedule(t)):
      assert rate.dtype == jnp.float32 and rate.shape == ()
      np.testing.assert_allclose(
          float(rate), expected_at(t), rtol=RTOL, atol=ATOL, err_msg=f't={t}'
      )


# ------------------------------------------------------------------ constant


def test_constant():
  schedule = baselines.constant_schedule(0.05)
  _assert_matches(
      schedule, lambda t: 0.05, counts=list(range(50)),
      int_counts=(2**31 - 1,),
  )


def test_constant_returns_the_shape_of_count():
  schedule = baselines.constant_schedule(0.1)
  assert schedule(jnp.zeros((2, 3), jnp.int32)).shape == (2, 3)
  assert schedule(jnp.zeros((2, 3), jnp.int32)).dtype == jnp.float32


# ----------------------------------------------------------------- multistep


def _multistep_reference(init_value, boundaries, factor, n):
  rates = []
  for t in range(n):
    passed = sum(1 for b in boundaries if t >= b)
    rates.append(init_value * factor**passed)
  return rates


@pytest.mark.parametrize(
    'init_value, epochs, factor, n_epochs',
    [
        (0.1, [100, 150], 0.1, 200),  # the paper's ResNets
        (0.2, [60, 120, 160], 0.2, 200),  # the paper's WRN
        (0.1, [150, 225], 0.1, 300),  # the paper's DenseNet
        (0.05, list(range(30, 300, 30)), 0.5, 300),  # VGG-style: every 30
    ],
)
def test_multistep_paper_settings(init_value, epochs, factor, n_epochs):
  steps_per_epoch = 3
  boundaries = [e * steps_per_epoch for e in epochs]
  n = n_epochs * steps_per_epoch
  schedule = baselines.multistep_schedule(init_value, boundaries, factor)
  expected = _multistep_reference(init_value, boundaries, factor, n)
  around = [b + d for b in boundaries for d in (-1, 0, 1)]
  _assert_matches(schedule, expected, int_counts=around)


def test_multistep_empty_boundaries_and_zero_factor():
  _assert_matches(baselines.multistep_schedule(0.3, []), [0.3] * 20)
  _assert_matches(
      baselines.multistep_schedule(0.3, (5,), factor=0.0),
      _multistep_reference(0.3, [5], 0.0, 20),
  )


def test_multistep_accepts_a_numpy_array_of_boundaries():
  schedule = baselines.multistep_schedule(0.1, np.array([4, 8]), factor=0.5)
  _assert_matches(schedule, _multistep_reference(0.1, [4, 8], 0.5, 12))


def test_multistep_huge_count():
  schedule = baselines.multistep_schedule(0.1, [10, 2**31 - 1])
  _assert_matches(
      schedule,
      lambda t: 0.1 * 0.1 ** ((t >= 10) + (t >= 2**31 - 1)),
      counts=[0, 9, 10, 2**30 + 5, 2**31 - 2, 2**31 - 1],
  )


# ------------------------------------------------- cosine with warm restarts


def _cosine_restarts_torch_loop(init_value, t_0, t_mult, eta_min, n):
  """CosineAnnealingWarmRestarts stepped n times, as PyTorch's step() does."""
  rates = []
  t_cur, t_i = 0, t_0
  for _ in range(n):
    rates.append(
        eta_min
        + (init_value - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
    )
    t_cur += 1
    if t_cur >= t_i:
      t_cur -= t_i
      t_i *= t_mult
  return rates


def _cosine_restarts_exact(init_value, t_0, t_mult, eta_min, t):
  """The rate at step t, with the cycle found in exact integer arithmetic."""
  if t_mult == 1:
    t_cur, t_i = t % t_0, t_0
  else:
    start, t_i = 0, t_0
    while t >= start + t_i:
      start, t_i = start + t_i, t_i * t_mult
    t_cur = t - start
  return eta_min + (init_value - eta_min) * (
      1 + math.cos(math.pi * t_cur / t_i)
  ) / 2


def _restart_steps(t_0, t_mult, limit=2**31):
  starts, start, t_i = [], 0, t_0
  while start < limit:
    starts.append(start)
    start, t_i = start + t_i, t_i * t_mult
  return starts


@pytest.mark.parametrize('t_mult', [1, 2, 3])
@pytest.mark.parametrize(
    't_0, init_value, eta_min',
    [(1, 0.1, 1e-4), (5, 0.1, 1e-4), (7, 0.4, 0.0), (3, 0.2, 0.2)],
)
def test_cosine_warm_restarts_run(t_0, t_mult, init_value, eta_min):
  n = 400
  schedule = baselines.cosine_warm_restarts_schedule(
      init_value, t_0, t_mult, eta_min
  )
  expected = _cosine_restarts_torch_loop(init_value, t_0, t_mult, eta_min, n)
  # The two references agree with each other.
  np.testing.assert_allclose(
      expected,
      [
          _cosine_restarts_exact(init_value, t_0, t_mult, eta_min, t)
          for t in range(n)
      ],
      rtol=1e-12,
  )
  restarts = [s for s in _restart_steps(t_0, t_mult, n) if s > 0]
  around = [s + d for s in restarts[:4] for d in (-1, 0, 1)]
  _assert_matches(schedule, expected, int_counts=around)


@pytest.mark.parametrize('t_mult', [1, 2, 3])
@pytest.mark.parametrize('t_0', [1, 3, 7, 1000])
def test_cosine_warm_restarts_huge_counts(t_0, t_mult):
  init_value, eta_min = 0.1, 1e-4
  schedule = baselines.cosine_warm_restarts_schedule(
      init_value, decay_steps=t_0, period_multiplier=t_mult,
      end_value=eta_min,
  )
  if t_mult == 1:
    base = (2**30 // t_0) * t_0
    restarts = [base, base + t_0, base + 2 * t_0]
  else:
    restarts = _restart_steps(t_0, t_mult)[-4:]
  counts = [2**30 + 5, 2**31 - 2, 2**31 - 1]
  counts += [s + d for s in restarts for d in (-1, 0, 1) if 0 <= s + d < 2**31]
  expected = lambda t: _cosine_restarts_exact(
      init_value, t_0, t_mult, eta_min, t
  )
  _assert_matches(schedule, expected, counts=sorted(set(counts)),
                  int_counts=restarts[-1:])
  # A restart is a restart: the full rate, right on the step.
  for s in restarts:
    if s > 0 and (t_0, t_mult) != (1, 1):  # with (1, 1) every step restarts
      assert float(schedule(s)) == pytest.approx(init_value, rel=1e-6)
      assert float(schedule(s - 1)) < init_value


def test_cosine_warm_restarts_paper_setting():
  # T_0 = 1 epoch (here 5 steps), T_mult = 2, eta_min = 1e-4, 10 epochs.
  schedule = baselines.cosine_warm_restarts_schedule(0.1, 5, 2, 1e-4)
  _assert_matches(
      schedule, _cosine_restarts_torch_loop(0.1, 5, 2, 1e-4, 50)
  )


# ---------------------------------------------------------------------- knee


class _KneeLRScheduler:
  """Iyer et al.'s KneeLRScheduler, restated: it counts from 1."""

  def __init__(self, peak_lr, warmup_steps, explore_steps, total_steps):
    self.peak_lr, self.warmup_steps = peak_lr, warmup_steps
    self.explore_steps, self.total_steps = explore_steps, total_steps
    self.decay_steps = total_steps - (warmup_steps + explore_steps)
    self.current_step = 1

  def get_lr(self, global_step):
    if global_step <= self.warmup_steps:
      return self.peak_lr * global_step / self.warmup_steps
    if global_step <= self.warmup_steps + self.explore_steps:
      return self.peak_lr
    slope = -1 * self.peak_lr / self.decay_steps
    return max(0.0, self.peak_lr + slope * (
        global_step - self.warmup_steps - self.explore_steps))

  def step(self):
    self.current_step += 1


def _knee_rates(peak, warmup, explore, total, n):
  """The rate of each of n training steps: get_lr, then step(), per batch."""
  scheduler = _KneeLRScheduler(peak, warmup, explore, total)
  rates = []
  for _ in range(n):
    if scheduler.current_step > total and scheduler.decay_steps == 0:
      rates.append(0.0)  # past the run; their get_lr divides by zero here
    else:
      rates.append(scheduler.get_lr(scheduler.current_step))
    scheduler.step()
  return rates


@pytest.mark.parametrize(
    'warmup, explore, total',
    [
        (0, 100, 200),  # the paper: explore at 0.1 for 100 epochs, then decay
        (0, 300, 500),
        (10, 90, 200),
        (7, 0, 50),
        (0, 0, 40),
        (5, 45, 50),  # no decay phase: straight to 0
        (50, 0, 50),  # warmup only
        (1, 1, 3),
    ],
)
def test_knee(warmup, explore, total):
  peak = 0.1
  schedule = baselines.knee_schedule(peak, warmup, explore, total)
  n = total + 20
  expected = _knee_rates(peak, warmup, explore, total, n)
  edges = [warmup - 1, warmup, warmup + explore - 1, warmup + explore,
           total - 1, total, total + 1]
  _assert_matches(schedule, expected,
                  int_counts=[e for e in edges if 0 <= e < n])
  assert expected[total] == 0.0
  if warmup + explore < total:
    assert expected[total - 1] == 0.0  # the decay ends on the run's last step
  if warmup:
    assert expected[0] == peak / warmup  # the first step trains
  np.testing.assert_allclose(float(schedule(2**31 - 1)), 0.0, atol=ATOL)


def test_knee_authors_call_at_every_step():
  # KneeLRScheduler(peak_lr=0.1, warmup_steps=0, explore_steps=39100,
  # total_steps=195500): 100 and 500 epochs of 391 steps.
  total = 195_500
  expected = np.array(_knee_rates(0.1, 0, 39_100, total, total + 10))
  schedule = baselines.knee_schedule(0.1, 0, 39_100, total)
  # float32 rate against float64: a few ulps of 0.1 at most.
  np.testing.assert_allclose(_rates(schedule, np.arange(total + 10)), expected,
                             rtol=RTOL, atol=ATOL)
  # One step ahead of a 0-based reading: the decay starts at step 39100.
  assert expected[39_099] == 0.1 and expected[39_100] < 0.1


# ----------------------------------------------------------------- one-cycle


def _one_cycle_torch_algorithm(
    max_lr, total_steps, pct_start, div_factor, final_div_factor, step_num
):
  """OneCycleLR.get_lr, three_phase=True, anneal_strategy='linear'."""
  initial_lr = max_lr / div_factor
  min_lr = initial_lr / final_div_factor
  phases = [
      (float(pct_start * total_steps) - 1, initial_lr, max_lr),
      (float(2 * pct_start * total_steps) - 2, max_lr, initial_lr),
      (total_steps - 1, initial_lr, min_lr),
  ]
  start_step = 0.0
  for i, (end_step, start_lr, end_lr) in enumerate(phases):
    if step_num <= end_step or i == len(phases) - 1:
      pct = (step_num - start_step) / (end_step - start_step)
      return (end_lr - start_lr) * pct + start_lr
    start_step = end_step
  raise AssertionError('unreachable')


@pytest.mark.parametrize(
    'max_value, total, pct_start, div_factor, final_div_factor',
    [
        (0.1, 200, 0.45, 10.0, 10.0),  # the paper's appendix setting
        (0.1, 1000, 0.45, 10.0, 10.0),
        (0.1, 200, 0.3, 25.0, 1e4),  # PyTorch's defaults
        (1.0, 97, 0.3, 25.0, 1e4),
        (0.5, 10, 0.2, 5.0, 3.0),
        (0.2, 4, 0.3, 25.0, 1e4),  # the first phase shorter than a step
    ],
)
def test_one_cycle(max_value, total, pct_start, div_factor, final_div_factor):
  schedule = baselines.one_cycle_schedule(
      max_value, total, pct_start=pct_start, div_factor=div_factor,
      final_div_factor=final_div_factor,
  )
  expected = lambda t: _one_cycle_torch_algorithm(
      max_value, total, pct_start, div_factor, final_div_factor, t
  )
  e1 = pct_start * total - 1
  e2 = 2 * pct_start * total - 2
  edges = [math.floor(e1), math.ceil(e1), math.floor(e2), math.ceil(e2),
           total - 2, total - 1]
  _assert_matches(schedule, expected, counts=list(range(total)),
                  int_counts=edges)
  # After the cycle (where PyTorch raises), the final rate is held.
  final = max_value / div_factor / final_div_factor
  for t in (total, total + 1, 10 * total, 2**31 - 1):
    np.testing.assert_allclose(float(schedule(t)), final, rtol=RTOL)


def test_one_cycle_paper_peak_and_valley():
  schedule = baselines.one_cycle_schedule(
      0.1, 200, pct_start=0.45, div_factor=10, final_div_factor=10
  )
  # Phase ends: 0.45 * 200 - 1 = 89 (peak), 2 * 90 - 2 = 178 (back to 0.01).
  np.testing.assert_allclose(float(schedule(0)), 0.01, rtol=RTOL)
  np.testing.assert_allclose(float(schedule(89)), 0.1, rtol=RTOL)
  np.testing.assert_allclose(float(schedule(178)), 0.01, rtol=RTOL)
  np.testing.assert_allclose(float(schedule(199)), 0.001, rtol=RTOL)


# -------------------------------------------------------------------- cyclic


def _cyclic_torch_formula(base_lr, max_lr, up, down, t):
  """CyclicLR.get_lr, mode='triangular' (scale_fn = 1)."""
  total_size = float(up + down)
  step_ratio = up / total_size
  cycle = math.floor(1 + t / total_size)
  x = 1.0 + t / total_size - cycle
  if x <= step_ratio:
    scale_factor = x / step_ratio
  else:
    scale_factor = (x - 1) / (step_ratio - 1)
  return base_lr + (max_lr - base_lr) * scale_factor


@pytest.mark.parametrize(
    'base, high, up, down',
    [
        (0.001, 0.1, 10, None),  # symmetric
        (0.07, 0.1, 4, 4),
        (0.01, 0.2, 5, 15),  # asymmetric
        (0.01, 0.2, 15, 5),
        (0.1, 0.1, 3, 2),  # base == max: constant
        (0.0, 1.0, 1, 1),
    ],
)
def test_cyclic_triangular(base, high, up, down):
  schedule = baselines.cyclic_triangular_schedule(base, high, up, down)
  d = up if down is None else down
  period = up + d
  expected = lambda t: _cyclic_torch_formula(base, high, up, d, t)
  edges = [k * period + o for k in (1, 2) for o in (-1, 0, 1, up, up + 1)]
  _assert_matches(schedule, expected, counts=list(range(5 * period + 3)),
                  int_counts=edges)


def test_cyclic_triangular_huge_counts():
  base, high, up, down = 0.01, 0.2, 6, 14
  schedule = baselines.cyclic_triangular_schedule(base, high, up, down)
  period = up + down

  def exact(t):  # the step in the cycle, in integers
    tau = t % period
    scale = tau / up if tau <= up else (period - tau) / down
    return base + (high - base) * scale

  k = (2**30 + 5) // period
  counts = [k * period + o for o in range(period + 1)] + [2**31 - 1]
  _assert_matches(schedule, exact, counts=counts)


# ------------------------------------------------------------ general shape


@pytest.mark.parametrize(
    'schedule',
    [
        baselines.constant_schedule(0.1),
        baselines.multistep_schedule(0.1, [3, 6]),
        baselines.cosine_warm_restarts_schedule(0.1, 2, 2, 1e-4),
        baselines.knee_schedule(0.1, 2, 3, 10),
        baselines.one_cycle_schedule(0.1, 10),
        baselines.cyclic_triangular_schedule(0.01, 0.1, 2, 3),
    ],
    ids=['constant', 'multistep', 'cosine', 'knee', 'one_cycle', 'cyclic'],
)
def test_rates_are_float32_with_the_shape_of_count(schedule):
  counts = jnp.arange(12, dtype=jnp.int32).reshape(3, 4)
  for rates in (schedule(counts), jax.jit(schedule)(counts)):
    assert rates.dtype == jnp.float32 and rates.shape == (3, 4)
  np.testing.assert_allclose(
      np.asarray(jax.jit(schedule)(counts)).ravel(),
      np.asarray(jax.vmap(schedule)(jnp.arange(12, dtype=jnp.int32))),
      rtol=RTOL, atol=ATOL,
  )
  for count in (5, np.int32(5), jnp.int32(5)):
    rate = schedule(count)
    assert rate.dtype == jnp.float32 and rate.shape == ()


def test_values_may_be_traced():
  """Rate values (not step counts) may be vmapped over, e.g. a sweep."""
  peaks = jnp.array([0.1, 0.2, 0.4])
  rates = jax.vmap(lambda p: baselines.knee_schedule(p, 0, 5, 10)(7))(peaks)
  # Step 7 is KneeLRScheduler's get_lr(8): 2 of the 5 decay steps remain.
  np.testing.assert_allclose(rates, peaks * 2 / 5, rtol=RTOL)
  rates = jax.vmap(
      lambda p: baselines.cosine_warm_restarts_schedule(p, 4, 2)(2)
  )(peaks)
  np.testing.assert_allclose(rates, peaks / 2, rtol=RTOL)


# ----------------------------------------------------------- invalid calls

_B = baselines
_INVALID = [
    (_B.constant_schedule, (-0.1,), {}, ValueError, 'value'),
    (_B.constant_schedule, (float('nan'),), {}, ValueError, 'value'),
    (_B.multistep_schedule, (0.1, [150, 100]), {}, ValueError, 'boundaries'),
    (_B.multistep_schedule, (0.1, [100, 100]), {}, ValueError, 'boundaries'),
    (_B.multistep_schedule, (0.1, [0, 100]), {}, ValueError, 'boundaries'),
    # A float count is refused: JAX would truncate it.
    (_B.multistep_schedule, (0.1, [1.5]), {}, ValueError, 'boundaries'),
    (_B.multistep_schedule, (0.1, [2**31]), {}, ValueError, 'boundaries'),
    (_B.multistep_schedule, (0.1, [10]), {'factor': -0.5}, ValueError,
     'factor'),
    (_B.multistep_schedule, (float('inf'), [10]), {}, ValueError,
     'init_value'),
    # 0.1 * 1e20**2 overflows float32, which would turn optax's masked
    # evaluation into NaN at every step.
    (_B.multistep_schedule, (0.1, [10, 20]), {'factor': 1e20}, ValueError,
     'factor'),
    (_B.cosine_warm_restarts_schedule, (0.1, 0), {}, ValueError,
     'decay_steps'),
    (_B.cosine_warm_restarts_schedule, (0.1, 10.5), {}, ValueError,
     'decay_steps'),
    (_B.cosine_warm_restarts_schedule, (0.1, 10), {'period_multiplier': 0},
     ValueError, 'period_multiplier'),
    (_B.cosine_warm_restarts_schedule, (0.1, 10), {'period_multiplier': 1.5},
     ValueError, 'period_multiplier'),
    (_B.cosine_warm_restarts_schedule, (0.1, 10), {'end_value': 0.2},
     ValueError, 'end_value'),
    (_B.cosine_warm_restarts_schedule, (0.1, 10), {'end_value': -1e-4},
     ValueError, 'end_value'),
    (_B.knee_schedule, (-0.1, 0, 10, 20), {}, ValueError, 'peak_value'),
    (_B.knee_schedule, (0.1, -1, 10, 20), {}, ValueError, 'warmup_steps'),
    (_B.knee_schedule, (0.1, 0, 2.5, 20), {}, ValueError, 'explore_steps'),
    (_B.knee_schedule, (0.1, 10, 100, 100), {}, ValueError, 'total_steps'),
    (_B.knee_schedule, (0.1, 0, 0, 0), {}, ValueError, 'total_steps'),
    (_B.knee_schedule, (0.1, 0, 0, 2**31), {}, ValueError, 'total_steps'),
    (_B.one_cycle_schedule, (0.0, 100), {}, ValueError, 'peak_value'),
    (_B.one_cycle_schedule, (0.1, 1), {}, ValueError, 'total_steps'),
    (_B.one_cycle_schedule, (0.1, 100.5), {}, ValueError, 'total_steps'),
    # The fall would end after the run.
    (_B.one_cycle_schedule, (0.1, 100), {'pct_start': 0.6}, ValueError,
     'pct_start'),
    (_B.one_cycle_schedule, (0.1, 100), {'pct_start': 0.0}, ValueError,
     'pct_start'),
    (_B.one_cycle_schedule, (0.1, 3), {'pct_start': 0.3}, ValueError,
     'total_steps'),
    (_B.one_cycle_schedule, (0.1, 100), {'div_factor': 0.0}, ValueError,
     'div_factor'),
    (_B.one_cycle_schedule, (0.1, 100), {'final_div_factor': float('inf')},
     ValueError, 'final_div_factor'),
    (_B.cyclic_triangular_schedule, (0.5, 0.1, 10), {}, ValueError,
     'init_value'),
    (_B.cyclic_triangular_schedule, (0.1, 0.5, 0), {}, ValueError,
     'up_steps'),
    (_B.cyclic_triangular_schedule, (0.1, 0.5, 10), {'down_steps': 0},
     ValueError, 'down_steps'),
    (_B.cyclic_triangular_schedule, (0.1, float('nan'), 10), {}, ValueError,
     'peak_value'),
]


@pytest.mark.parametrize(
    'factory, args, kwargs, error, argument',
    _INVALID,
    ids=[f'{f.__name__}-{a}-{i}' for i, (f, _, _, _, a) in enumerate(_INVALID)],
)
def test_invalid_arguments(factory, args, kwargs, error, argument):
  pattern = re.escape(factory.__name__) + r':.*`' + re.escape(argument)
  with pytest.raises(error, match=pattern):
    factory(*args, **kwargs)


# -------------------------------------------------- against torch, if present


def _torch_rates(make_scheduler, n):
  torch = pytest.importorskip('torch')
  param = torch.nn.Parameter(torch.zeros(()))
  optimizer = torch.optim.SGD([param], lr=1.0)
  scheduler = make_scheduler(torch.optim.lr_scheduler, optimizer)
  rates = []
  for t in range(n):
    rates.append(optimizer.param_groups[0]['lr'])
    if t < n - 1:
      optimizer.step()
      scheduler.step()
  return rates


def test_against_torch_multistep():
  rates = _torch_rates(
      lambda s, opt: _set_lr(s.MultiStepLR, opt, 0.2, [60, 120, 160], 0.2),
      200,
  )
  schedule = baselines.multistep_schedule(0.2, [60, 120, 160], 0.2)
  _assert_matches(schedule, rates)


def _set_lr(scheduler_cls, optimizer, lr, *args, **kwargs):
  for group in optimizer.param_groups:
    group['lr'] = lr
  return scheduler_cls(optimizer, *args, **kwargs)


def test_against_torch_cosine_warm_restarts():
  rates = _torch_rates(
      lambda s, opt: _set_lr(
          s.CosineAnnealingWarmRestarts, opt, 0.1, T_0=5, T_mult=2,
          eta_min=1e-4,
      ),
      200,
  )
  schedule = baselines.cosine_warm_restarts_schedule(0.1, 5, 2, 1e-4)
  _assert_matches(schedule, rates)


def test_against_torch_one_cycle():
  rates = _torch_rates(
      lambda s, opt: s.OneCycleLR(
          opt, max_lr=0.1, total_steps=200, pct_start=0.45,
          anneal_strategy='linear', cycle_momentum=False, div_factor=10.0,
          final_div_factor=10.0, three_phase=True,
      ),
      200,
  )
  schedule = baselines.one_cycle_schedule(
      0.1, 200, pct_start=0.45, div_factor=10.0, final_div_factor=10.0
  )
  _assert_matches(schedule, rates)


def test_against_torch_cyclic():
  rates = _torch_rates(
      lambda s, opt: s.CyclicLR(
          opt, base_lr=0.01, max_lr=0.2, step_size_up=5, step_size_down=15,
          mode='triangular', cycle_momentum=False,
      ),
      100,
  )
  schedule = baselines.cyclic_triangular_schedule(0.01, 0.2, 5, 15)
  _assert_matches(schedule, rates)
