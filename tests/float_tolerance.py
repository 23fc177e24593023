"""Comparing training runs that differ only in the order of float32 sums.

Two programs that take the same SGD steps on the same data, but split the
batch over other devices, processes or vmapped seeds, add the same numbers in
another order. How far apart may their parameters end up?

- One step: every gradient entry is a float32 sum over the batch and the
  image: a convolution's weight gradient sums batch x height x width terms,
  18,432 for the stem of ResNet-8 on digits at batch 288. Summed in a tree its
  relative error is about log2(n) * eps = 15 * 6e-8 = 1e-6; summed
  sequentially, as XLA:CPU's loop emitter does for a convolution inside a
  while loop (the multi-seed runner's scan), about sqrt(n) * eps = 8e-6.
  Measured against a float64 run of the same step: 3.6e-6 for the app and the
  runner alike, 5e-6 for the runner with XLA's convolutions in its scan.
- K steps: plain SGD propagates an earlier error e through
  theta' = theta - lr * g(theta), i.e. multiplies it by (I - lr * H), whose
  norm is at most 1 + lr * |lambda_max|, about 4 here. Measured in float64
  along random directions and along the runner's actual difference, the
  error grows by at most 1.2x over 5 steps: the errors of the steps add up,
  5 * 8e-6 = 4e-5 of a step after 5 steps.

`RTOL = 1e-3` of the distance travelled, ||theta_K - theta_0||, is 25x that
and far below what a real mistake changes: per-device instead of
cross-replica BatchNorm statistics move the result by 0.11 of that distance,
another rate or other rows of data by the whole of it. Measured on an Intel
Xeon (AVX-512) with XLA's default code, with `--xla_cpu_max_isa=AVX2`, with
YNNPACK's fusions off (`--xla_cpu_experimental_ynn_fusion_type=`) and with
both: the runner against the app 1.1e-6 to 4.2e-6 after 1, 2, 4 and 9 steps;
2 processes against 4 devices 8e-7, 1 device against 4 devices 5e-6.

All of this assumes the loss has a continuous gradient, and ReLU's has not:
its derivative jumps from 0 to 1 at 0. A ReLU network at batch 288 has about
1.3 million units a step; where one of them lies within rounding of 0, one
program takes the gradient on one side of the kink and the other on the
other side, a difference that does not shrink with the rounding. With ReLU
the same comparisons measured anything from 1e-6 to 1.2e-2, by code path
and number of steps (runner against app after 4 steps: 9.5e-7 with XLA's
default code, 1.2e-2 with YNNPACK's fusions off), and either program against
float64 spread as widely. So a test that compares two programs trains with
`SMOOTH_ACTIVATION` (`model_kwargs.act`): the same model and the same code
otherwise, with GELU in place of ReLU.

Comparing leaf by leaf against each leaf's largest entry (an earlier rule)
is not sound: a leaf whose values are all small (a BatchNorm offset of 0.005)
carries the same absolute rounding as the others, so its relative error is
set by the other leaves, not by itself.
"""

import jax
import numpy as np

RTOL = 1e-3

# The activation (a name of train.models.ACTIVATIONS) of models whose runs
# are compared: its derivative is continuous, so the bound above holds.
SMOOTH_ACTIVATION = 'gelu'


def relative_distance(actual, expected, initial) -> float:
  """||actual - expected|| / ||expected - initial|| over whole pytrees."""
  diff = sum(float(np.sum((np.asarray(a, np.float64) - b) ** 2))
             for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)))
  travelled = sum(
      float(np.sum((np.asarray(b, np.float64) - c) ** 2))
      for b, c in zip(jax.tree.leaves(expected), jax.tree.leaves(initial)))
  return float(np.sqrt(diff / travelled))


def assert_same_training(actual, expected, initial, rtol: float = RTOL):
  """Asserts two runs from `initial` ended within float32 reassociation.

  Args:
    actual: parameters (any pytree) of one run.
    expected: parameters of the reference run, same structure.
    initial: the parameters both runs started from.
    rtol: allowed distance as a fraction of the distance `expected` travelled.
  """
  assert (jax.tree.structure(actual) == jax.tree.structure(expected)
          == jax.tree.structure(initial))
  distance = relative_distance(actual, expected, initial)
  assert distance <= rtol, (
      f'runs differ by {distance:.3g} of the distance travelled (allowed: '
      f'{rtol:.3g}, from float32 reassociation over the steps taken)')
