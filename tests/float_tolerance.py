"""Comparing training runs that differ only in the order of float32 sums.

Two programs that take the same SGD steps on the same data, but split the
batch over other devices, processes or vmapped seeds, add the same numbers in
another order. How far apart may their parameters end up?

- One step: every gradient entry is a float32 sum over the batch and the
  image (here up to 256 x 64 x 9 terms). Summed in a tree, as XLA does, its
  relative error is about log2(n) * eps = 17 * 6e-8, i.e. 1e-6 of the step.
- K steps: plain SGD propagates an earlier error e through
  theta' = theta - lr * g(theta), i.e. multiplies it by (I - lr * H), whose
  norm is at most 1 + lr * beta. With lr <= 0.1 and beta ~ 30 (the largest
  Hessian eigenvalue magnitude of these models at initialisation, see
  `python -m train.range_test`) that is at most 4 a step, so after K = 5
  steps the accumulated error is at most (4^5 - 1) / 3 = 341 steps' worth:
  about 3.4e-4 of the distance travelled.

`RTOL = 1e-3` of the distance travelled, ||theta_K - theta_0||, is therefore
above any reassociation error of runs of up to 5 steps, on any CPU, and far
below what a real mistake changes: per-device instead of cross-replica
BatchNorm statistics move the result by 0.11 of that distance, another rate
or other rows of data by the whole of it. Measured on a 2-core CPU machine:
2 processes against 4 devices 8e-7, 1 device against 4 devices 5e-6.

Comparing leaf by leaf against each leaf's largest entry (the earlier rule)
is not sound: a leaf whose values are all small (a BatchNorm offset of 0.005)
carries the same absolute rounding as the others, so its relative error is
set by the other leaves, not by itself.
"""

import jax
import numpy as np

RTOL = 1e-3


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
