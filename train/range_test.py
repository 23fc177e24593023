"""PLRS's bounds from an LR range test, L_max checked against 1/beta (beta: the
most positive Hessian eigenvalue at init); writes DIR/range_test.{png,json}.

    python -m train.range_test --config=train/configs/default.py --workdir=DIR
"""

import itertools
import json
import pathlib
from typing import Any

from absl import flags
import jax
import matplotlib
import ml_collections
import numpy as np
import optax

import plrs_jax
from plrs_jax import curvature
from train import cli
from train import config_validation
from train import engine
from train import input_pipeline
from train import workdir as workdir_lib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS


def _define_flags():
  """Defined only when this is the program: the benchmarks import it."""
  cli.define_flags('default.py', 'Directory for the figure and results.')
  flags.DEFINE_float('min_lr', 1e-4, 'First rate of the range test, > 0.')
  flags.DEFINE_float('max_lr', 10.0, 'Last rate of the range test, > --min_lr.')
  flags.DEFINE_integer('num_steps', 100, 'Steps of the range test, >= 10.',
                       lower_bound=10)
  flags.DEFINE_integer('power_iterations', 100, 'Power iterations for the top '
                       'Hessian eigenvalue, >= 1.', lower_bound=1)
  # Checked while the flags are parsed: a mistake is one line, exit 2.
  flags.register_validator('min_lr', lambda rate: rate > 0, '--min_lr must be '
                           '> 0 (rates grow from it geometrically).')
  flags.register_multi_flags_validator(
      ['min_lr', 'max_lr'], lambda f: f['max_lr'] > f['min_lr'],
      '--max_lr must be greater than --min_lr.')


def make_loss_fn(model, batch_stats, mean, std):
  """`loss_fn(params, batch)` as SGD sees it: BatchNorm in training mode."""
  return lambda params, batch: engine.train_loss(
      params, batch_stats, model.apply,
      engine.normalize(batch['image'], mean, std), batch['label'],
      jax.random.key(0))[0]


def _batches(config, dataset, num_steps):
  """The batches `python -m train` reads with `config.seed`."""
  return input_pipeline.train_batches(
      dataset, global_batch_size=config.batch_size,
      seed=engine.run_keys(config.seed).data_seed, start_step=0,
      num_steps=num_steps)


def measure(config: ml_collections.ConfigDict, *, min_lr: float,
            max_lr: float, num_steps: int, power_iterations: int,
            dataset: input_pipeline.Dataset | None = None
            ) -> tuple[dict, plrs_jax.RangeTestResult]:
  """The range test and beta at initialisation: (range_test.json, result)."""
  dataset = dataset or input_pipeline.dataset_from_config(config)
  steps_per_epoch = input_pipeline.steps_per_epoch(dataset, config.batch_size)
  model = config_validation.model(config, dataset.num_classes)
  state = engine.create_train_state(engine.run_keys(config.seed).init, model,
                                    dataset.image_shape, optax.identity())
  params, batch_stats = state.params, state.batch_stats
  batches = _batches(config, dataset, max(num_steps, steps_per_epoch))
  first = next(batches)
  result = plrs_jax.lr_range_test(
      make_loss_fn(model, batch_stats, dataset.mean, dataset.std), params,
      itertools.chain([first], batches), min_lr=min_lr, max_lr=max_lr,
      num_steps=num_steps)
  eigen = top_eigenvalue(config, dataset, params, batch_stats, model=model,
                         power_iterations=power_iterations, batch=first)
  beta = eigen.eigenvalue
  summary = {field: getattr(result, field) for field in (
      'suggested_min', 'suggested_max', 'min_loss_lr', 'diverged_step')}
  summary.update(beta=beta, beta_converged=eigen.converged,
                 learning_rates=result.learning_rates.tolist(),
                 losses=[v if np.isfinite(v) else None for v in result.losses])
  if beta > 0:
    check = curvature.check_bounds(result.suggested_max, beta)
    summary.update(check=check.explanation,
                   below_theorem_bound=check.below_theorem_bound,
                   below_stability_edge=check.below_stability_edge,
                   verdict=verdict(check, num_steps))
  else:
    summary.update(check='The Hessian has no positive eigenvalue on this '
                   'batch: no bound applies.', verdict='Use the range test.')
  return summary, result


def top_eigenvalue(
    config: ml_collections.ConfigDict, dataset: input_pipeline.Dataset,
    params: Any, batch_stats: Any, *, power_iterations: int, model: Any = None,
    batch: dict[str, np.ndarray] | None = None) -> curvature.EigenvalueResult:
  """beta: the most positive Hessian eigenvalue at `params` (first batch)."""
  model = model or config_validation.model(config, dataset.num_classes)
  batch = next(_batches(config, dataset, 1)) if batch is None else batch
  loss_fn = make_loss_fn(model, batch_stats, dataset.mean, dataset.std)
  return curvature.top_hessian_eigenvalue(
      lambda p: loss_fn(p, batch), params, key=jax.random.key(config.seed),
      num_iterations=power_iterations, which='largest')


def run(config: ml_collections.ConfigDict, workdir: str, **kwargs) -> dict:
  """Runs `measure`, writes the figure and JSON, returns the summary."""
  config_validation.validate(config)
  workdir = workdir_lib.check_path(workdir)
  summary, result = measure(config, **kwargs)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / 'range_test.json').write_text(json.dumps(summary, indent=1))
  plot(result, summary['beta'], workdir / 'range_test.png',
       title=f'{config.model} on {config.dataset}, batch {config.batch_size}')
  return summary


def verdict(check: curvature.BoundsCheck, num_steps: int) -> str:
  """Which measurement to trust when the range test and the curvature differ."""
  if check.below_theorem_bound:
    return ('The range test and the curvature agree: L_max also meets the '
            "paper's condition L_max < 1/beta.")
  return (
      'The range test and the curvature disagree. Trust the range test to '
      'choose L_max: it measures how the training loss responds to SGD at each '
      f'rate, over {num_steps} steps and batches. beta is the curvature of one '
      'batch at the initial parameters, which training changes within a few '
      "steps, and 1/beta is the theorem's sufficient condition for its proof, "
      'not a rate at which training was seen to fail. The theorem\'s guarantee '
      'does not cover this L_max; lower it below 1/beta if you want it to.')


def plot(result: plrs_jax.RangeTestResult, beta: float, path: pathlib.Path,
         title: str = '') -> pathlib.Path:
  """Loss against the rate (log x) with the bounds, 1/beta and 2/beta."""
  rates, smoothed, raw = result.learning_rates, result.losses, result.raw_losses
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.plot(rates, raw, lw=0.6, alpha=0.4, label='loss')
  ax.plot(rates, smoothed, lw=1.5, label='smoothed loss')
  ax.axvspan(result.suggested_min, result.suggested_max, color='tab:green',
             alpha=0.25, label=f'suggested [L_min, L_max] = '
             f'[{result.suggested_min:.3g}, {result.suggested_max:.3g}]')
  if beta > 0:
    ax.axvline(1 / beta, color='tab:red', ls='--',
               label=f'1/beta = {1 / beta:.3g} (Theorem 1)')
    ax.axvline(2 / beta, color='tab:purple', ls=':',
               label=f'2/beta = {2 / beta:.3g} (stability edge)')
  smoothed, raw = smoothed[np.isfinite(smoothed)], raw[np.isfinite(raw)]
  if smoothed.size:
    # Diverging losses would flatten the interesting part: cap the view.
    ax.set_ylim(min(raw.min(), smoothed.min()) * 0.9,
                min(max(raw.max(), smoothed.max()), 2 * smoothed[0]) * 1.05)
  ax.set(xscale='log', xlabel='learning rate', ylabel='training loss',
         title=title or 'LR range test')
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main():
  summary = cli.run(run, **{
      name: FLAGS[name].value
      for name in ('min_lr', 'max_lr', 'num_steps', 'power_iterations')})
  print('Suggested PLRS bounds: min_value={suggested_min:.4g}, max_value='
        '{suggested_max:.4g} (lowest smoothed loss at rate {min_loss_lr:.4g}).'
        '\nMost positive Hessian eigenvalue at initialisation (one batch): '
        'beta = {beta:.4g}. {check}\n{verdict}'.format(**summary))
  print(f'Figure: {pathlib.Path(FLAGS.workdir) / "range_test.png"}')


if __name__ == '__main__':
  _define_flags()
  cli.start(main)
