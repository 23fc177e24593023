"""The paper's baseline learning-rate schedules, as optax schedules.

PLRS (arXiv 2407.07613) is compared against six deterministic schedules:
constant, multi-step, cosine annealing with warm restarts, knee, one-cycle and
cyclic (triangular). Each factory here validates its arguments eagerly, on the
host, and returns a closure ``schedule(count)`` written in jnp that can be
jitted, vmapped over counts, and called with a Python int, an int32 array or a
traced count. Rates come back in the default float dtype (float32), with the
shape of ``count``.

Where the paper used PyTorch's schedulers, the schedules here follow PyTorch's
algorithms step for step (step ``t`` here is the rate PyTorch's scheduler gives
after ``t`` calls to ``scheduler.step()``). They are built from optax's pieces
where optax has an equivalent, and written as closed forms otherwise.

Arguments are named as optax names them: ``init_value`` (the rate a schedule
starts from), ``peak_value``, ``end_value``, and durations as ``*_steps``
(``constant_schedule`` keeps ``value``, the name of optax's own constant).
"""

from collections.abc import Iterable
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from plrs_jax._validation import check_int
from plrs_jax._validation import check_order
from plrs_jax._validation import check_value
from plrs_jax._validation import FLOAT32_MAX
from plrs_jax._validation import MAX_STEP

__all__ = (
    'constant_schedule',
    'cosine_warm_restarts_schedule',
    'cyclic_triangular_schedule',
    'knee_schedule',
    'multistep_schedule',
    'one_cycle_schedule',
)


def _as_rate_schedule(schedule: optax.Schedule) -> optax.Schedule:
  """Wraps `schedule` to return default-float arrays of the shape of `count`."""

  def rate_schedule(count: jax.typing.ArrayLike) -> jax.Array:
    rate = jnp.asarray(schedule(count), dtype=jnp.result_type(float))
    return jnp.broadcast_to(rate, jnp.shape(count))

  return rate_schedule


def constant_schedule(value: float | jax.Array) -> optax.Schedule:
  r"""A constant learning rate.

  .. math::
    \eta_t = v

  The paper's constant baseline: 0.1 (0.05 for VGG-16).

  Args:
    value: the rate, a finite number >= 0.

  Returns:
    A schedule: a function from step count to a float32 rate (of the shape of
    the count).

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.constant_schedule(0.1)
    >>> print(round(float(schedule(0)), 6), round(float(schedule(10**6)), 6))
    0.1 0.1
  """
  check_value('constant_schedule', 'value', value)
  return _as_rate_schedule(optax.constant_schedule(value))


def multistep_schedule(
    init_value: float | jax.Array,
    boundaries: Iterable[int],
    factor: float = 0.1,
) -> optax.Schedule:
  r"""Step decay: the rate is multiplied by ``factor`` at each boundary.

  PyTorch's ``MultiStepLR`` (``milestones=boundaries``, ``gamma=factor``):

  .. math::
    \eta_t = \eta_0 \cdot f^{\,|\{b \in B : t \geq b\}|}

  where :math:`\eta_0` is ``init_value``, :math:`f` is ``factor`` and
  :math:`B` the set of ``boundaries``. The paper's settings, in epochs (multiply
  by the steps per epoch): ResNets 0.1, /10 at 100 and 150; DenseNet /10 at 150
  and 225; VGG /10 every 30; WRN 0.2, x0.2 at 60, 120 and 160.

  Args:
    init_value: the rate before the first boundary, a finite number >= 0.
    boundaries: the steps at which the rate is multiplied by ``factor``: ints
      >= 1 (and < 2**31), strictly increasing. May be empty (a constant rate).
    factor: the multiplier applied at each boundary, a finite number >= 0.

  Returns:
    A schedule: a function from step count to a float32 rate.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.multistep_schedule(0.1, boundaries=[100, 150])
    >>> print([round(float(schedule(t)), 6) for t in (99, 100, 149, 150)])
    [0.1, 0.01, 0.01, 0.001]

  References:
    He et al., `Deep Residual Learning for Image Recognition
    <https://arxiv.org/abs/1512.03385>`_, 2016.
  """
  fn = 'multistep_schedule'
  init = check_value(fn, 'init_value', init_value)
  scale = check_value(fn, 'factor', factor)
  steps = [check_int(fn, f'boundaries[{i}]', b, minimum=1)
           for i, b in enumerate(boundaries)]
  # A repeated boundary would be one drop, not two.
  if any(a >= b for a, b in itertools.pairwise(steps)):
    raise ValueError(
        f'{fn}: `boundaries` must be strictly increasing, got {steps}.')
  if init is not None and scale is not None:
    # optax evaluates every scaled value at every step (masked, not skipped):
    # one that overflows float32 turns the whole schedule into NaN.
    for k in range(1, len(steps) + 1):
      if init * scale**k > FLOAT32_MAX:
        raise ValueError(
            f'{fn}: `factor`={factor} takes the rate to init_value * factor**'
            f'{k} = {init * scale**k:.3g}, beyond float32\'s largest value '
            f'{FLOAT32_MAX:.3g}; use a smaller factor or fewer boundaries.'
        )
  boundaries_and_scales = dict.fromkeys(steps, factor) or None
  return _as_rate_schedule(
      optax.piecewise_constant_schedule(init_value, boundaries_and_scales)
  )


def cosine_warm_restarts_schedule(
    init_value: float | jax.Array,
    decay_steps: int,
    period_multiplier: int = 1,
    end_value: float | jax.Array = 0.0,
) -> optax.Schedule:
  r"""Cosine annealing with warm restarts (SGDR).

  PyTorch's ``CosineAnnealingWarmRestarts`` (``T_0=decay_steps``,
  ``T_mult=period_multiplier``, ``eta_min=end_value``), stepped once per step:

  .. math::
    \eta_t = \eta_{\min} + \frac{\eta_0 - \eta_{\min}}{2}
      \left(1 + \cos\left(\pi \frac{T_{cur}}{T_i}\right)\right)

  Cycle :math:`i = 0, 1, \ldots` lasts :math:`T_i = T_0 m^i` steps and starts
  at step :math:`s_i = \sum_{j < i} T_j`; :math:`T_{cur} = t - s_i` counts the
  steps since the last restart. At a restart the rate jumps back to
  ``init_value``. The paper's setting: ``T_0`` = 1 epoch, ``T_mult`` = 2,
  ``eta_min`` = 1e-4.

  The cycle is found in integers, so restarts fall on the right step for every
  int32 count: by ``count % decay_steps`` when ``period_multiplier`` is 1, and
  otherwise by a binary search of the start steps of the cycles that begin
  below 2**31, computed exactly on the host (a floating-point logarithm, as in
  PyTorch's ``step(epoch)``, puts some restarts one step late).

  Args:
    init_value: the rate at the start of every cycle, a finite number >= 0.
    decay_steps: the length of the first cycle (optax's name for the length
      of a cosine decay) in steps, an int >= 1 (and
      < 2**31).
    period_multiplier: each cycle is this many times longer than the previous
      one, an int >= 1.
    end_value: the rate the cosine anneals to, a finite number in
      [0, ``init_value``].

  Returns:
    A schedule: a function from step count to a float32 rate.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.cosine_warm_restarts_schedule(
    ...     1.0, decay_steps=4, period_multiplier=2)
    >>> print([round(float(schedule(t)), 4) for t in range(0, 13, 2)])
    [1.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 1.0]

  References:
    Loshchilov and Hutter, `SGDR: Stochastic Gradient Descent with Warm
    Restarts <https://arxiv.org/abs/1608.03983>`_, 2017.
  """
  fn = 'cosine_warm_restarts_schedule'
  init = check_value(fn, 'init_value', init_value)
  low = check_value(fn, 'end_value', end_value)
  check_order(fn, 'end_value', low, 'init_value', init)
  decay_steps = check_int(fn, 'decay_steps', decay_steps, minimum=1)
  period_multiplier = check_int(
      fn, 'period_multiplier', period_multiplier, minimum=1
  )

  if period_multiplier == 1:
    starts = lengths = None
  else:
    # Every cycle that starts at an int32 count, in exact (Python) integers.
    start_list, length_list = [], []
    start, length = 0, decay_steps
    while start <= MAX_STEP:
      start_list.append(start)
      length_list.append(length)
      start, length = start + length, length * period_multiplier
    starts = np.asarray(start_list, dtype=np.int64)
    # A cycle longer than 2**64 steps gives T_cur / T_i < 2**-33 for every
    # int32 count: capping it changes no float32 rate and keeps it finite.
    lengths = np.asarray([min(n, 2**64) for n in length_list], np.float64)

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    count = jnp.asarray(count)
    dtype = jnp.result_type(float)
    if starts is None:
      since_restart = count % decay_steps
      period = jnp.asarray(decay_steps, dtype)
    else:
      cycle = jnp.searchsorted(
          jnp.asarray(starts, jnp.int32), count, side='right'
      )
      cycle = jnp.maximum(cycle - 1, 0)
      since_restart = count - jnp.asarray(starts, jnp.int32)[cycle]
      period = jnp.asarray(lengths, dtype)[cycle]
    fraction = since_restart.astype(dtype) / period
    cosine = (1 + jnp.cos(jnp.pi * fraction)) / 2
    return end_value + (init_value - end_value) * cosine

  return _as_rate_schedule(schedule)


def knee_schedule(
    peak_value: float | jax.Array,
    warmup_steps: int,
    explore_steps: int,
    total_steps: int,
) -> optax.Schedule:
  r"""The knee (explore-exploit) schedule: warmup, a long plateau, linear decay.

  Exactly Iyer et al.'s ``KneeLRScheduler(peak_lr=peak_value,
  warmup_steps=warmup_steps, explore_steps=explore_steps,
  total_steps=total_steps)``, the class the PLRS authors call, at every step.
  That scheduler starts at ``current_step = 1``, so training step ``t``
  (0-based, the rate of the ``t``-th update) uses its ``get_lr(t + 1)``:

  .. math::
    \eta_t = \begin{cases}
      \eta_{\max}\, (t + 1) / W, & t + 1 \leq W \\
      \eta_{\max}, & t + 1 \leq W + E \\
      \max\!\left(0,\ \eta_{\max} (N - t - 1) / (N - W - E)\right),
        & t + 1 \leq N \\
      0, & t \geq N
    \end{cases}

  where :math:`W` is ``warmup_steps``, :math:`E` is ``explore_steps`` and
  :math:`N` is ``total_steps``. The first warmup step trains at
  ``peak_value / W`` (not 0), the explore phase covers steps ``W - 1`` to
  ``W + E - 1``, and the last step, ``N - 1``, has rate 0. Beyond ``N`` (where
  their scheduler divides by zero when ``N = W + E``) the rate stays 0. The
  long explore phase at a high rate is meant to find wide minima; the decay
  then settles into one. The paper's setting: explore at 0.1 for 100 epochs,
  then decay linearly to 0, no warmup (the authors' call: ``warmup_steps=0,
  explore_steps=39100, total_steps=195500``).

  Args:
    peak_value: the rate of the explore phase, a finite number >= 0.
    warmup_steps: steps of linear warmup up to ``peak_value``, an int >= 0
      (0 for none).
    explore_steps: steps at ``peak_value`` after the warmup, an int >= 0.
    total_steps: the run's length in steps, an int >= 1 (and < 2**31) with
      ``warmup_steps + explore_steps <= total_steps``.

  Returns:
    A schedule: a function from step count to a float32 rate.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.knee_schedule(
    ...     0.1, warmup_steps=0, explore_steps=100, total_steps=200)
    >>> print([round(float(schedule(t)), 6) for t in (0, 99, 100, 149, 199)])
    [0.1, 0.1, 0.099, 0.05, 0.0]

  References:
    Iyer et al., `Wide-minima Density Hypothesis and the Explore-Exploit
    Learning Rate Schedule <https://arxiv.org/abs/2003.03977>`_, 2020
    (``KneeLRScheduler`` in github.com/nikhil-iyer-97/wide-minima-density-
    hypothesis).
  """
  fn = 'knee_schedule'
  check_value(fn, 'peak_value', peak_value)
  warmup_steps = check_int(fn, 'warmup_steps', warmup_steps, minimum=0)
  explore_steps = check_int(fn, 'explore_steps', explore_steps, minimum=0)
  total_steps = check_int(fn, 'total_steps', total_steps, minimum=1)
  if warmup_steps + explore_steps > total_steps:
    raise ValueError(
        f'{fn}: `warmup_steps` + `explore_steps` must be <= `total_steps`, got '
        f'warmup_steps={warmup_steps}, explore_steps={explore_steps} and '
        f'total_steps={total_steps}.'
    )
  plateau_end = warmup_steps + explore_steps
  decay_steps = total_steps - plateau_end

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    dtype = jnp.result_type(float)
    # Clamped to total_steps: the phase tests stay exact int32 comparisons
    # and t + 1 cannot overflow.
    t = jnp.minimum(jnp.asarray(count), total_steps)
    peak = jnp.asarray(peak_value, dtype)
    warmup = peak * (t + 1).astype(dtype) / max(warmup_steps, 1)
    # N - t - 1 is an exact integer; dividing last keeps the relative error
    # of a float32 rate within a few ulps.
    decay = peak * (total_steps - t - 1).astype(dtype) / max(decay_steps, 1)
    return jnp.where(
        t < warmup_steps, warmup,
        jnp.where(t < plateau_end, peak,
                  jnp.where(t < total_steps, jnp.maximum(decay, 0), 0.0)))

  return _as_rate_schedule(schedule)


def one_cycle_schedule(
    peak_value: float | jax.Array,
    total_steps: int,
    *,
    pct_start: float = 0.3,
    div_factor: float | jax.Array = 25.0,
    final_div_factor: float | jax.Array = 1e4,
) -> optax.Schedule:
  r"""The three-phase linear one-cycle schedule of PyTorch's ``OneCycleLR``.

  Exactly ``torch.optim.lr_scheduler.OneCycleLR(max_lr=peak_value,
  total_steps=total_steps, pct_start=pct_start, div_factor=div_factor,
  final_div_factor=final_div_factor, anneal_strategy='linear',
  three_phase=True)``: the rate is piecewise linear through the points

  .. math::
    (0, \eta_0),\ (e_1, \eta_{\max}),\ (e_2, \eta_0),\ (e_3, \eta_{\min})

  with :math:`\eta_0 = \eta_{\max} / d`, :math:`\eta_{\min} = \eta_0 / d_f`,
  :math:`e_1 = pN - 1`, :math:`e_2 = 2pN - 2` and :math:`e_3 = N - 1`, where
  :math:`p` is ``pct_start``, :math:`N` is ``total_steps``, :math:`d` is
  ``div_factor`` and :math:`d_f` is ``final_div_factor``. After step
  :math:`N - 1` (where PyTorch raises an error) the rate stays at
  :math:`\eta_{\min}`. The paper's setting: 45% up, 45% down, then a final
  decay, ``pct_start=0.45``, ``div_factor=10``, ``final_div_factor=10``.

  ``optax.linear_onecycle_schedule`` is not used: it puts the phase ends at
  ``int(pct * N)`` rather than PyTorch's ``pct * N - 1``.

  Args:
    peak_value: the peak rate, a finite number > 0.
    total_steps: the length of the cycle in steps, an int >= 2 (and < 2**31).
    pct_start: the fraction of ``total_steps`` spent increasing the rate (the
      decrease takes as long, then the final phase); every phase must have
      positive length, which ``1 / total_steps < pct_start <= 0.5`` ensures.
    div_factor: ``peak_value / div_factor`` is the initial rate, a finite
      number > 0.
    final_div_factor: the initial rate divided by ``final_div_factor`` is the
      final rate, a finite number > 0.

  Returns:
    A schedule: a function from step count to a float32 rate.

  Raises:
    ValueError: an argument is out of range, or the phases are empty
      (``pct_start * total_steps <= 1``).

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.one_cycle_schedule(
    ...     1.0, total_steps=12, pct_start=0.25, div_factor=10,
    ...     final_div_factor=10)
    >>> print([round(float(schedule(t)), 6) for t in (0, 1, 2, 3, 4, 11, 12)])
    [0.1, 0.55, 1.0, 0.55, 0.1, 0.01, 0.01]

  References:
    Smith and Topin, `Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates <https://arxiv.org/abs/1708.07120>`_, 2017.
  """
  fn = 'one_cycle_schedule'
  check_value(fn, 'peak_value', peak_value, positive=True)
  total_steps = check_int(fn, 'total_steps', total_steps, minimum=2)
  check_value(fn, 'div_factor', div_factor, positive=True)
  check_value(fn, 'final_div_factor', final_div_factor, positive=True)
  # PyTorch's phase ends, in float64 as PyTorch computes them.
  ends = (
      float(pct_start * total_steps) - 1,
      float(2 * pct_start * total_steps) - 2,
      float(total_steps - 1),
  )
  # Also refuses a pct_start that is not a number, or so far above 0.5 that
  # the fall would end after the run.
  if not 0 < ends[0] < ends[1] < ends[2]:
    raise ValueError(
        f'{fn}: the phases must have positive length, but with '
        f'{total_steps=} and {pct_start=} they end at steps {ends[0]}, '
        f'{ends[1]} and {ends[2]} (pct_start * total_steps - 1, 2 * pct_start '
        '* total_steps - 2, total_steps - 1). Use a `pct_start` below 0.5 and '
        'above 1 / `total_steps`.'
    )

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    dtype = jnp.result_type(float)
    initial = peak_value / div_factor
    points = jnp.asarray((0.0,) + ends, dtype)
    values = jnp.stack([
        jnp.asarray(v, dtype)
        for v in (initial, peak_value, initial, initial / final_div_factor)
    ])
    # jnp.interp holds the end values outside [0, e3]: the final rate after
    # the cycle, as if the last phase were clamped rather than raising.
    return jnp.interp(jnp.asarray(count, dtype), points, values)

  return _as_rate_schedule(schedule)


def cyclic_triangular_schedule(
    init_value: float | jax.Array,
    peak_value: float | jax.Array,
    up_steps: int,
    down_steps: int | None = None,
) -> optax.Schedule:
  r"""The triangular cyclical learning rate of PyTorch's ``CyclicLR``.

  ``torch.optim.lr_scheduler.CyclicLR(base_lr=init_value, max_lr=peak_value,
  step_size_up=up_steps, step_size_down=down_steps, mode='triangular')``: the
  rate climbs linearly from ``init_value`` to ``peak_value`` in :math:`U`
  steps, falls back in :math:`D` steps, and repeats:

  .. math::
    \eta_t = \eta_b + (\eta_{\max} - \eta_b) \cdot \begin{cases}
      \tau / U, & \tau \leq U \\
      (U + D - \tau) / D, & \tau > U
    \end{cases}
    \qquad \tau = t \bmod (U + D)

  which is PyTorch's ``x / ratio`` and ``(x - 1) / (ratio - 1)`` written with
  the step within the cycle, :math:`\tau`, computed in integers (exact for
  every int32 count).

  Args:
    init_value: the lowest rate, a finite number >= 0.
    peak_value: the highest rate, a finite number >= ``init_value``.
    up_steps: steps from ``init_value`` to ``peak_value``, an int >= 1.
    down_steps: steps from ``peak_value`` back to ``init_value``, an int
      >= 1; None (the default) for ``up_steps``.

  Returns:
    A schedule: a function from step count to a float32 rate.

  Example:
    >>> import plrs_jax
    >>> schedule = plrs_jax.cyclic_triangular_schedule(
    ...     0.1, 0.5, up_steps=2, down_steps=4)
    >>> print([round(float(schedule(t)), 6) for t in range(8)])
    [0.1, 0.3, 0.5, 0.4, 0.3, 0.2, 0.1, 0.3]

  References:
    Smith, `Cyclical Learning Rates for Training Neural Networks
    <https://arxiv.org/abs/1506.01186>`_, 2017.
  """
  fn = 'cyclic_triangular_schedule'
  low = check_value(fn, 'init_value', init_value)
  high = check_value(fn, 'peak_value', peak_value)
  check_order(fn, 'init_value', low, 'peak_value', high)
  up = check_int(fn, 'up_steps', up_steps, minimum=1)
  if down_steps is None:
    down = up
  else:
    down = check_int(fn, 'down_steps', down_steps, minimum=1)
  period = up + down

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    dtype = jnp.result_type(float)
    count = jnp.asarray(count)
    # A period beyond int32 is never completed by an int32 count.
    in_cycle = count % period if period <= MAX_STEP else count
    in_cycle = in_cycle.astype(dtype)
    scale = jnp.where(
        in_cycle <= up, in_cycle / up, (float(period) - in_cycle) / down
    )
    return init_value + (peak_value - init_value) * scale

  return _as_rate_schedule(schedule)


def cyclic_momentum_schedule(
    base_momentum: float | jax.Array,
    max_momentum: float | jax.Array,
    up_steps: int,
    down_steps: int | None = None,
) -> optax.Schedule:
  r"""The momentum PyTorch's ``CyclicLR`` sets when ``cycle_momentum=True``.

  ``CyclicLR`` cycles the momentum opposite to the rate, and does so by
  default: ``max_momentum`` where the rate is lowest, ``base_momentum`` at its
  peak. The PLRS authors' CIFAR baseline, ``CyclicLR(base_lr=0.01,
  max_lr=0.1, mode='triangular', step_size_up=8000)`` on ``SGD(momentum=0)``,
  therefore trains with momentum 0.9 at step 0 and 0.8 at step 8000. Pass it
  with :func:`cyclic_triangular_schedule` (same ``up_steps`` and
  ``down_steps``) to ``optax.inject_hyperparams(optax.sgd)``, whose momentum
  is PyTorch's (no dampening).

  .. math::
    \mu_t = \mu_{\max} - (\mu_{\max} - \mu_b) \cdot s_t

  with :math:`s_t \in [0, 1]` the triangle of
  :func:`cyclic_triangular_schedule`.

  Args:
    base_momentum: the momentum at the rate's peak, in [0, 1].
    max_momentum: the momentum at the rate's low, in [``base_momentum``, 1].
    up_steps: steps of the rate's climb, an int >= 1.
    down_steps: steps of its fall; None for ``up_steps``.

  Returns:
    A schedule: a function from step count to a float32 momentum.

  Example:
    >>> import optax, plrs_jax
    >>> momentum = plrs_jax.cyclic_momentum_schedule(0.8, 0.9, up_steps=2)
    >>> print([round(float(momentum(t)), 6) for t in range(5)])
    [0.9, 0.85, 0.8, 0.85, 0.9]
    >>> tx = optax.inject_hyperparams(optax.sgd)(
    ...     learning_rate=plrs_jax.cyclic_triangular_schedule(0.01, 0.1, 2),
    ...     momentum=momentum)
  """
  fn = 'cyclic_momentum_schedule'
  low = check_value(fn, 'base_momentum', base_momentum)
  high = check_value(fn, 'max_momentum', max_momentum)
  check_order(fn, 'base_momentum', low, 'max_momentum', high)
  if high is not None and high > 1:
    raise ValueError(f'{fn}: max_momentum must be <= 1, got {max_momentum!r}.')
  triangle = cyclic_triangular_schedule(0.0, 1.0, up_steps, down_steps)

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    return max_momentum - (max_momentum - base_momentum) * jnp.asarray(
        triangle(count))

  return schedule
