"""The paper's comparison of schedules, at CPU scale or as configured.

    python -m benchmarks.schedulers [--quick] [--out DIR] [--model M]
    python -m benchmarks.schedulers --config=train/configs/<setting>.py \\
        [--num_epochs N] [--num_seeds S] [--schedules a,b] [--workdir DIR]

Without --config: ResNet-8 (train/models.py) on scikit-learn's digits, plain
SGD, batch 32, 30 epochs, 5 seeds per schedule trained together in one
vmapped program (train/seeds.py, which runs `python -m train`'s step, keys
and data order); seed s starts from the same parameters and reads the same
data order under every schedule, so the schedules are compared on paired runs
(--quick: the MLP of train/models.py, 2 epochs, 2 seeds, plrs and knee only,
to check that it runs). The schedules
are train/configs/default.py's, with its epoch-valued fields rescaled from
its 3 epochs to this run's E epochs:

| schedule             | default.py (3 epochs)    | here (E epochs)          |
|----------------------|--------------------------|--------------------------|
| plrs                 | U[0.07, 0.1]             | U[L_min, L_max] of the   |
|                      |                          | LR range test (below)    |
| plrs_default         |                          | U[0.07, 0.1]             |
| constant             | 0.1                      | 0.1                      |
| multistep            | 0.1, /10 at epoch 2      | 0.1, /10 at E/2, 3E/4    |
| cosine_warm_restarts | T_0 = 1 epoch, T_mult 2  | same (the paper's T_0)   |
| knee                 | 0.1 for 1 epoch, then    | 0.1 for E/2 epochs, then |
|                      | linear decay to 0        | linear decay to 0        |
| one_cycle            | 0.01 -> 0.1 -> 1e-3      | same, over the E epochs  |
| cyclic_triangular    | 0.01..0.1, up 0.5 epoch  | 0.01..0.1, up E/6 epochs |

The PLRS bounds come from `plrs_jax.lr_range_test` on this model and data
(`train.range_test.measure`, as `python -m train.range_test` runs it: 1e-4 to
10 over 100 steps of batch 32,
L_max = 0.1 x the rate of the lowest smoothed loss, L_min = 0.7 L_max); the
default config's (0.07, 0.1) runs too, as `plrs_default`.

With --config: every schedule in that config file's SCHEDULES and every seed
is one run of `train.train.train_and_evaluate(config, workdir)`, one after
another, unchanged but for the flags given (--num_epochs, the seed); the
curves are read back from each run's metrics.jsonl. This reproduces the
paper's Tables 1-3 on a machine with a GPU and the prepared TFDS dataset.
Runs live in --workdir (default OUT/schedulers_runs_<config>/), so running the
same command again resumes unfinished runs and reuses finished ones.

Writes OUT/schedulers[_<config>].json (per schedule, lists over seeds of the
final and best test accuracy and per-epoch curves; the settings), prints a
table of mean (SD) and draws the curves (mean +- SD) to the matching PNG.
"""

import argparse
import importlib.util
import pathlib
import sys
import time

import matplotlib
import numpy as np

from benchmarks import common
from train import input_pipeline
from train import plots
from train import range_test
from train import seeds
from train import train
from train.configs import default

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

NAME = 'schedulers'
BATCH_SIZE = 32


def _extra_flags(parser: argparse.ArgumentParser):
  for flag, kind, default, help_text in (
      ('config', pathlib.Path, None, 'a train/configs file: run its '
       'SCHEDULES through train.train_and_evaluate, seed after seed'),
      ('num_epochs', int, None, 'epochs (digits: 30; --config: its own)'),
      ('num_seeds', int, None, 'seeds per schedule (digits: 5; --config: 3)'),
      ('seed', int, 0, 'first seed'),
      ('schedules', str, None, 'comma-separated subset of the schedules'),
      ('model', str, None, 'digits only: a train/models.py model (default '
       'resnet8; --quick: mlp)'),
      ('workdir', pathlib.Path, None, '--config only: where the runs live')):
    parser.add_argument(f'--{flag}', type=kind, default=default,
                        help=help_text)


def digits_schedules(num_epochs: int,
                     plrs_bounds: tuple[float, float]) -> dict[str, dict]:
  """default.py's SCHEDULES rescaled from 3 epochs to E (module docstring),
  'plrs' at `plrs_bounds` (L_min, L_max): schedule configs by name."""
  base = {name: dict(config) for name, config in default.SCHEDULES.items()}
  low, high = plrs_bounds
  schedules = {
      'plrs': dict(base['plrs'], min_value=low, max_value=high),
      'plrs_default': base['plrs'],
      'constant': base['constant'],
      'multistep': dict(base['multistep'],
                        boundaries_epochs=[num_epochs / 2,
                                           3 * num_epochs / 4]),
      'cosine_warm_restarts': base['cosine_warm_restarts'],
      'knee': dict(base['knee'], explore_steps_epochs=num_epochs / 2),
      'one_cycle': base['one_cycle'],
      'cyclic_triangular': dict(base['cyclic_triangular'],
                                up_steps_epochs=num_epochs / 6),
  }
  return schedules


def digits_config(model: str, num_epochs: int, schedule: dict):
  """The default config with `model`, `num_epochs` and `schedule`."""
  config = default.get_config()
  config.model, config.num_epochs, config.batch_size = (model, num_epochs,
                                                        BATCH_SIZE)
  # Convolutions inside the vmapped scan run as im2col (train/im2col.py).
  config.model_kwargs = {} if model == 'mlp' else {'conv': 'im2col'}
  config.schedule = schedule
  return config


def run_digits(args) -> tuple[dict, dict]:
  """All schedules on digits, the seeds of each vmapped."""
  num_epochs = args.num_epochs or (2 if args.quick else 30)
  num_seeds = args.num_seeds or (2 if args.quick else 5)
  model = args.model or ('mlp' if args.quick else 'resnet8')
  dataset = input_pipeline.load_dataset('digits')
  reference = digits_config(model, num_epochs, default.SCHEDULES['plrs'])
  reference.seed = args.seed
  bounds, _ = range_test.measure(
      reference, min_lr=1e-4, max_lr=10.0,
      num_steps=20 if args.quick else 100,
      power_iterations=10 if args.quick else 100, dataset=dataset)
  bounds = {k: v for k, v in bounds.items()
            if k not in ('learning_rates', 'losses')}
  print(f'Range test: L_min = {bounds["suggested_min"]:.4g}, L_max = '
        f'{bounds["suggested_max"]:.4g} (lowest smoothed loss at '
        f'{bounds["min_loss_lr"]:.4g}); beta = {bounds["beta"]:.4g}.',
        flush=True)
  schedules = digits_schedules(
      num_epochs, (bounds['suggested_min'], bounds['suggested_max']))
  schedules = _select(schedules, args.schedules)
  if args.quick and not args.schedules:
    schedules = {k: schedules[k] for k in ('plrs', 'knee')}
  seed_list = list(range(args.seed, args.seed + num_seeds))
  results = {}
  for name, schedule in schedules.items():
    start = time.perf_counter()
    runner = seeds.SeedRunner(digits_config(model, num_epochs, schedule),
                              dataset=dataset)
    out = runner.run(seed_list)
    results[name] = _summarize(out['train_loss'], out['test_accuracy'],
                               out['test_loss'])
    # Seed 0's rates, to draw the schedule.
    results[name]['learning_rate_seed0'] = out['lr'][0].tolist()
    print(f'{name}: {time.perf_counter() - start:.1f} s, final test accuracy '
          f'{100 * np.mean(results[name]["test_accuracy"]):.2f}%', flush=True)
  settings = {
      'mode': 'digits, seeds vmapped (train/seeds.py)',
      'dataset': 'digits', 'model': model, 'batch_size': BATCH_SIZE,
      'num_epochs': num_epochs, 'seeds': seed_list,
      'steps_per_epoch': input_pipeline.steps_per_epoch(dataset, BATCH_SIZE),
      'optimizer': 'plain SGD (no momentum, no weight decay)',
      'range_test': bounds,
      'default_plrs_bounds': [default.SCHEDULES['plrs']['min_value'],
                              default.SCHEDULES['plrs']['max_value']],
      'schedules': schedules,
  }
  return results, settings


def load_config_module(path: pathlib.Path):
  """Imports a train/configs file (it must define SCHEDULES, get_config)."""
  spec = importlib.util.spec_from_file_location(
      f'_schedulers_config_{path.stem}', path)
  if spec is None or not path.exists():
    raise SystemExit(f'error: no config file {path}')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for attr in ('SCHEDULES', 'get_config'):
    if not hasattr(module, attr):
      raise SystemExit(f'error: {path} defines no {attr}.')
  return module


def run_config(args) -> tuple[dict, dict]:
  """Every schedule of a config file and seed, through train_and_evaluate."""
  module = load_config_module(args.config)
  names = list(_select(module.SCHEDULES, args.schedules))
  num_seeds = args.num_seeds or 3
  seed_list = list(range(args.seed, args.seed + num_seeds))
  workdir = args.workdir or args.out / f'{NAME}_runs_{args.config.stem}'
  results, errors = {}, {}
  for name in names:
    curves = []
    for seed in seed_list:
      config = module.get_config(name)
      config.seed = seed
      if args.num_epochs:
        config.num_epochs = args.num_epochs
      run_dir = workdir / name / f'seed_{seed}'
      print(f'{name}, seed {seed}: {run_dir}', flush=True)
      try:
        train.train_and_evaluate(config, str(run_dir))
      except train.TrainingDiverged as e:
        errors.setdefault(name, []).append(f'seed {seed}: {e}')
        print(f'  diverged: {e}', flush=True)
        continue
      steps, epochs = plots.read_metrics(run_dir / 'metrics.jsonl')
      curves.append({key: [r[key] for r in epochs] for key in (
          'train_loss', 'test_accuracy', 'test_loss')})
      curves[-1].update(lr=[r['lr'] for r in steps],
                        lr_steps=[r['step'] for r in steps])
    if not curves:
      continue
    length = min(len(c['train_loss']) for c in curves)
    results[name] = _summarize(
        np.array([c['train_loss'][:length] for c in curves]),
        np.array([c['test_accuracy'][:length] for c in curves]),
        np.array([c['test_loss'][:length] for c in curves]))
    results[name]['learning_rate_seed0'] = curves[0]['lr']
    results[name]['learning_rate_seed0_steps'] = curves[0]['lr_steps']
  reference = module.get_config(names[0])
  settings = {
      'mode': 'config file, sequential train.train_and_evaluate runs',
      'config': str(args.config), 'dataset': reference.dataset,
      'model': reference.model, 'batch_size': reference.batch_size,
      'num_epochs': args.num_epochs or reference.num_epochs,
      'seeds': seed_list, 'workdir': str(workdir),
      'schedules': {n: dict(module.SCHEDULES[n]) for n in names},
      'errors': errors,
  }
  return results, settings


def _select(schedules: dict, subset: str | None) -> dict:
  if not subset:
    return dict(schedules)
  names = [n.strip() for n in subset.split(',') if n.strip()]
  unknown = [n for n in names if n not in schedules]
  if unknown:
    raise SystemExit(f'error: unknown schedules {unknown}; choose from '
                     f'{", ".join(schedules)}.')
  return {n: schedules[n] for n in names}


def _summarize(train_loss, test_accuracy, test_loss) -> dict:
  """(seeds, epochs) arrays -> the JSON fields of one schedule."""
  train_loss, test_accuracy = np.asarray(train_loss), np.asarray(test_accuracy)
  return {
      'test_accuracy': test_accuracy[:, -1].tolist(),
      'best_test_accuracy': test_accuracy.max(axis=1).tolist(),
      'final_train_loss': train_loss[:, -1].tolist(),
      'train_loss': train_loss.tolist(),
      'test_accuracy_curve': test_accuracy.tolist(),
      'test_loss': np.asarray(test_loss).tolist(),
  }


def _mean_sd(values, scale=1.0, digits=2) -> str:
  """'mean (SD)', the SD over seeds with ddof=1."""
  values = scale * np.asarray(values, float)
  sd = values.std(ddof=1) if values.size > 1 else float('nan')
  return f'{values.mean():.{digits}f} ({sd:.{digits}f})'


def table(results: dict) -> str:
  """Mean (SD over seeds) of the final and best accuracy and final loss."""
  rows = []
  for name, r in results.items():
    rows.append([name, len(r['test_accuracy']),
                 _mean_sd(r['test_accuracy'], 100),
                 _mean_sd(r['best_test_accuracy'], 100),
                 f'{100 * max(r["test_accuracy"]):.2f}',
                 _mean_sd(r['final_train_loss'], digits=4)])
  return common.markdown_table(
      ['schedule', 'seeds', 'final test acc % mean (SD)',
       'best test acc % mean (SD)', 'final test acc % max',
       'final train loss mean (SD)'], rows)


def plot(results: dict, settings: dict, path: pathlib.Path) -> pathlib.Path:
  """Training loss, test accuracy (mean +- SD band) and seed 0's rates."""
  fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
  colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
  for i, (name, r) in enumerate(results.items()):
    color = colors[i % len(colors)]
    style = '--' if i >= len(colors) else '-'
    for ax, key in ((axes[0], 'train_loss'), (axes[1], 'test_accuracy_curve')):
      curves = np.asarray(r[key], float)
      epochs = np.arange(1, curves.shape[1] + 1)
      mean = curves.mean(axis=0)
      sd = curves.std(axis=0, ddof=1) if curves.shape[0] > 1 else 0 * mean
      ax.plot(epochs, mean, style, color=color, lw=1.4, label=name,
              marker='o' if epochs.size < 5 else None)
      ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.15)
    rates = np.asarray(r.get('learning_rate_seed0', []), float)
    steps = r.get('learning_rate_seed0_steps', np.arange(rates.size))
    if rates.size:
      # PLRS's rates jump every step: draw them faint, under the others.
      noisy = name.startswith('plrs')
      axes[2].plot(steps, rates, style, color=color, lw=0.4 if noisy else 1.2,
                   alpha=0.45 if noisy else 0.9, zorder=1 if noisy else 2,
                   label=name)
  axes[0].set(yscale='log', xlabel='epoch', ylabel='training loss (mean +- SD)')
  axes[1].set(xlabel='epoch', ylabel='test accuracy (mean +- SD)')
  accuracy = np.concatenate([np.asarray(r['test_accuracy_curve'], float)[:, -1]
                             for r in results.values()])
  if accuracy.size:
    axes[1].set_ylim(max(0.0, np.nanmin(accuracy) - 0.05), 1.0)
  axes[2].set(xlabel='step', ylabel='learning rate (seed 0)')
  for ax in axes:
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=8, loc='lower right')
  axes[2].legend(fontsize=7, loc='lower left')
  fig.suptitle(
      f'{settings["model"]} on {settings["dataset"]}, batch '
      f'{settings["batch_size"]}, {settings["num_epochs"]} epochs, '
      f'{len(settings["seeds"])} seeds per schedule', fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main():
  args = common.parse_args(__doc__.splitlines()[0], _extra_flags)
  if args.config is None:
    name = NAME
    results, settings = run_digits(args)
  else:
    name = f'{NAME}_{args.config.stem}'
    results, settings = run_config(args)
  if not results:
    sys.exit('error: no run finished.')
  print()
  print(table(results))
  if 'range_test' in settings:
    bounds = settings['range_test']
    print(f'\nplrs: range-test bounds [{bounds["suggested_min"]:.4g}, '
          f'{bounds["suggested_max"]:.4g}]; plrs_default: '
          f'{settings["default_plrs_bounds"]}. '
          f'{bounds.get("check", "")}')
  path = common.write_results(
      name, {**results, 'settings': settings}, args.out, quick=args.quick)
  figure = plot(results, settings, args.out / f'{name}.png')
  print(f'\nResults: {path}\nFigure: {figure}')


if __name__ == '__main__':
  main()
