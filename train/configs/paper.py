"""What the paper's settings (arXiv 2407.07613) share: plain SGD with
augmentation, and its schedules (departures: docs/cifar_epochs.md)."""

import ml_collections

from train.configs import base


def get_config() -> ml_collections.ConfigDict:
  """The base config as the paper trains; a setting sets its data and model."""
  config = base.base_config()
  config.augment = True
  config.eval_batch_size = 1000
  config.log_every_steps = 100
  config.keep_checkpoints = 3
  return config


def schedules(*, plrs_bounds: tuple[float, float], multistep: dict,
              constant: float = 0.1, peak: float = 0.1,
              knee_explore_epochs: int = 100,
              cyclic: dict | None = None) -> dict[str, dict]:
  """The paper's schedules: PLRS in `plrs_bounds` (L_min, L_max), per step
  and per epoch (the authors' ImageNet runs drew one rate an epoch), and its
  baselines; `peak` is the knee's, one-cycle's and the restarts'. `cyclic`:
  CyclicLR's arguments, as `cyclic_triangular` and, with its momentum cycling
  on plain SGD (0.9 at step 0, 0.8 at the peaks), `cyclic_triangular_momentum`.
  """
  plrs = dict(name='plrs', min_value=plrs_bounds[0], max_value=plrs_bounds[1])
  chosen = {
      'plrs': plrs,
      'plrs_per_epoch': dict(plrs, hold_steps_epochs=1),
      'constant': dict(name='constant', value=constant),
      'multistep': dict(name='multistep', **multistep),
      'cosine_warm_restarts': dict(
          name='cosine_warm_restarts', init_value=peak, decay_steps_epochs=1,
          period_multiplier=2, end_value=1e-4),
      'knee': dict(name='knee', peak_value=peak, warmup_steps=0,
                   explore_steps_epochs=knee_explore_epochs),
      'one_cycle': dict(name='one_cycle', peak_value=peak, pct_start=0.45,
                        div_factor=10.0, final_div_factor=1e4),
  }
  if cyclic is not None:
    chosen['cyclic_triangular'] = dict(name='cyclic_triangular', **cyclic)
    chosen['cyclic_triangular_momentum'] = dict(
        chosen['cyclic_triangular'], cycle_momentum=True, base_momentum=0.8,
        max_momentum=0.9)
  return chosen


# The authors' CIFAR runs: CyclicLR(0.01, 0.1, step_size_up=8000), stepped
# per batch.
CIFAR_CYCLIC = dict(init_value=0.01, peak_value=0.1, up_steps=8000)

