"""PLRS against the paper's baselines and the other methods, paired seeds.

    python -m benchmarks.schedulers [--dataset=digits|fashion_mnist] [--quick]
        [--out DIR] [--num_epochs N] [--num_seeds S] [--schedules a,b]
    python -m benchmarks.schedulers --config=train/configs/<setting>.py \\
        [--num_epochs N] [--num_seeds S] [--schedules a,b] [--workdir DIR]

Without --config, every method trains S seeds (5) together in one vmapped
program (train/seeds.py, which runs `python -m train`'s step, keys and data
order): seed s starts from the same parameters and reads the same batches
under every method, so methods are compared on paired runs. Plain SGD (no
momentum, no weight decay), as in the paper, unless a method's recipe says
otherwise. The datasets (`DATASETS`):

- digits: ResNet-8, batch 32, 30 epochs on scikit-learn's 1,438 training
  digits; too easy to separate the schedules.
- fashion_mnist: ResNet-8, batch 32, a class-balanced training subset
  (`train_subset`) of the 60,000 images and all 10,000 test images; the size
  and epochs fit the whole comparison into 90 minutes on a 2-core CPU
  (`DATASETS` says how).

The methods (`methods`) are train/configs/default.py's schedules, with its
epoch-valued fields rescaled from its 3 epochs to this run's E epochs, and
the other ways of setting the rate:

| method               | default.py (3 epochs)    | here (E epochs)          |
|----------------------|--------------------------|--------------------------|
| plrs                 | U[0.07, 0.1]             | U[L_min, L_max] of the   |
|                      |                          | LR range test (below)    |
| plrs_default         |                          | U[0.07, 0.1] (by hand)   |
| constant             | 0.1                      | 0.1                      |
| multistep            | 0.1, /10 at epoch 2      | 0.1, /10 at E/2, 3E/4    |
| cosine_warm_restarts | T_0 = 1 epoch, T_mult 2  | same (the paper's T_0)   |
| knee                 | 0.1 for 1 epoch, then    | 0.1 for E/2 epochs, then |
|                      | linear decay to 0        | linear decay to 0        |
| one_cycle            | 0.01 -> 0.1 -> 1e-3      | same, over the E epochs  |
| cyclic_triangular    | 0.01..0.1, up 0.5 epoch  | 0.01..0.1, up E/6 epochs |
| two_regime           |                          | SGD at 0.1, then Adam at |
|                      |                          | 1e-3 from E/2 (our       |
|                      |                          | reading of the paper)    |
| autodrop             |                          | SGD at 0.1 with AutoDrop |
|                      |                          | (the authors' defaults;  |
|                      |                          | its first drop can come  |
|                      |                          | in epoch 23 at earliest) |
| autodrop_recipe      |                          | the same with the        |
|                      |                          | authors' momentum 0.9    |
|                      |                          | and weight decay 5e-4    |
| mlr_snet             |                          | SGD at the rate of the   |
|                      |                          | MLR-SNet net shipped in  |
|                      |                          | train/ (meta-trained on  |
|                      |                          | digits with ResNet-8)    |
| mlr_snet_snapshots   |                          | the same net's three     |
|                      |                          | snapshots, switched at   |
|                      |                          | thirds (the official     |
|                      |                          | transfer)                |

The PLRS bounds come from `plrs_jax.lr_range_test` on this model and data
(`train.range_test.measure`, as `python -m train.range_test` runs it: 1e-4 to
10, L_max = 0.1 x the rate of the lowest smoothed loss, L_min = 0.7 L_max),
with beta, the top Hessian eigenvalue, at initialisation and at the end of
seed 0's PLRS run. Resumable: an interrupted run keeps the methods it
finished (OUT/NAME.partial.json) and the same command goes on from there.

With --config: every schedule in that config file's SCHEDULES and every seed
is one run of `train.train.train_and_evaluate(config, workdir)`, one after
another, unchanged but for the flags given (--num_epochs, the seed); the
curves are read back from each run's metrics.jsonl. This reproduces the
paper's Tables 1-3 on a machine with a GPU and the prepared TFDS dataset.
Runs live in --workdir (default OUT/schedulers_runs_<config>/), so running the
same command again resumes unfinished runs and reuses finished ones.

Writes OUT/schedulers[_<dataset or config>].json (per method, lists over
seeds of the final test accuracy, the best, the final training loss, and
per-epoch curves; the settings), prints a table of mean (SD) and of PLRS's
paired differences, and draws the curves (mean +- SD) to the matching PNG.
--quick (the MLP, 3 epochs, 2 seeds, every method) checks that it runs.
"""

import argparse
import json
import importlib.util
import pathlib
import sys
import time

import jax
import matplotlib
import numpy as np
from scipy import stats
import tqdm

from benchmarks import common
from plrs_jax import curvature
from train import input_pipeline
from train import plots
from train import range_test
from train import seeds
from train import train
from train import workdir as workdirs
from train.configs import default

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

NAME = 'schedulers'
# Per dataset: model, batch size, epochs, training subset (0: all), seeds.
# Fashion-MNIST, measured on a quiet 2-core CPU: 5 seeds of ResNet-8 on
# 28x28 images, vmapped (im2col convolutions in the scan), train at about
# 740 images/s in total at batch 32 as at batch 128, so batch 32 takes 4x
# the steps for the same time; evaluating the 10,000 test images of 5 seeds
# takes 16 s (train/seeds.py). 13 methods must fit in 90 minutes, about
# 400 s each: E epochs on N images cost E * (5 N / 740 + 16) s, so
# N = 12,000 (1,200 a class) and E = 3 (default.py's epochs, so no schedule
# is rescaled; 1,125 steps) take about 300 s a method (measured: 309 to
# 389 s, 75 minutes in all with compilation and the range test). At batch
# 128, 6 epochs of 4,000 images (188 steps) left every method near 70% test
# accuracy, with a training loss still near 0.8: too short to tell
# schedules apart.
DATASETS = {
    'digits': dict(model='resnet8', batch_size=32, num_epochs=30,
                   train_subset=0, num_seeds=5),
    'fashion_mnist': dict(model='resnet8', batch_size=32, num_epochs=3,
                          train_subset=12_000, num_seeds=5),
}
QUICK = dict(model='mlp', num_epochs=3, num_seeds=2, range_steps=20,
             power_iterations=10)
# two_regime's Adam rate, our reading of Leclerc and Madry's proposal.
TWO_REGIME_ADAM_RATE = 1e-3
# AutoDrop as its authors' CIFAR scripts run it.
AUTODROP_RECIPE = dict(momentum=0.9, weight_decay=5e-4)


def _extra_flags(parser: argparse.ArgumentParser):
  for flag, kind, default, help_text in (
      ('dataset', str, 'digits', f'one of {", ".join(DATASETS)}'),
      ('data_dir', str, None, 'where the dataset\'s files are'),
      ('batch_size', int, None, 'batch size (default: the dataset\'s)'),
      ('train_subset', int, None, 'training images (0: all)'),
      ('config', pathlib.Path, None, 'a train/configs file: run its '
       'SCHEDULES through train.train_and_evaluate, seed after seed'),
      ('num_epochs', int, None, 'epochs (digits: 30; --config: its own)'),
      ('num_seeds', int, None, 'seeds per schedule (digits: 5; --config: 3)'),
      ('seed', int, 0, 'first seed'),
      ('schedules', str, None, 'comma-separated subset of the schedules'),
      ('model', str, None, 'a train/models.py model (default: the '
       "dataset's; --quick: mlp)"),
      ('workdir', pathlib.Path, None, '--config only: where the runs live')):
    parser.add_argument(f'--{flag}', type=kind, default=default,
                        help=help_text)


def paper_schedules(num_epochs: int,
                    plrs_bounds: tuple[float, float]) -> dict[str, dict]:
  """default.py's SCHEDULES rescaled from 3 epochs to E (module docstring),
  'plrs' at `plrs_bounds` (L_min, L_max): schedule configs by name."""
  base = {name: dict(config) for name, config in default.SCHEDULES.items()}
  low, high = plrs_bounds
  return {
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


def methods(num_epochs: int,
            plrs_bounds: tuple[float, float]) -> dict[str, dict]:
  """Every compared method as config overrides (module docstring)."""
  schedules = paper_schedules(num_epochs, plrs_bounds)
  out = {name: {'schedule': schedule} for name, schedule in schedules.items()}
  constant = {'schedule': schedules['constant']}
  out['two_regime'] = dict(constant, optimizer='two_regime', two_regime={
      'small_learning_rate': TWO_REGIME_ADAM_RATE,
      'switch_step_epochs': num_epochs / 2})
  out['autodrop'] = dict(constant, optimizer='autodrop')
  out['autodrop_recipe'] = dict(out['autodrop'], **AUTODROP_RECIPE)
  # The net shipped in train/, meta-trained on digits with ResNet-8: a
  # transfer to this dataset (and model, unless it is digits' ResNet-8).
  out['mlr_snet'] = dict(constant, optimizer='mlr_snet',
                         mlr_snet={'transfer': 'frozen'})
  out['mlr_snet_snapshots'] = dict(constant, optimizer='mlr_snet',
                                   mlr_snet={'transfer': 'snapshots'})
  return out


def run_config_for(args, overrides: dict):
  """The benchmark's config for one method: the dataset's settings + it."""
  config = default.get_config()
  config.dataset = args.dataset
  config.data_dir = args.data_dir
  config.model = args.model
  config.num_epochs, config.batch_size = args.num_epochs, args.batch_size
  config.train_subset, config.seed = args.train_subset, args.seed
  # Convolutions inside the vmapped scan run as im2col (train/im2col.py).
  config.model_kwargs = {} if args.model == 'mlp' else {'conv': 'im2col'}
  for field, value in overrides.items():
    if isinstance(value, dict) and field != 'schedule':
      config[field].update(value)
    else:
      config[field] = value
  return config


def _partial_path(args) -> pathlib.Path:
  return args.out / f'{args.name}.partial.json'


def run_vmapped(args) -> tuple[dict, dict]:
  """Every method on an in-memory dataset, the seeds of each vmapped.

  Resumable: after each method, the results so far go to
  OUT/NAME.partial.json; running the same command again reuses them.
  """
  seed_list = list(range(args.seed, args.seed + args.num_seeds))
  reference = run_config_for(args, {'schedule': default.SCHEDULES['plrs']})
  dataset = input_pipeline.dataset_from_config(reference)
  key = {field: getattr(args, field) for field in (
      'dataset', 'model', 'num_epochs', 'batch_size', 'train_subset',
      'num_seeds', 'seed', 'quick')}
  done = {}
  # A finished run (to add methods to it), or an interrupted one.
  for path in (args.out / f'{args.name}.json', _partial_path(args)):
    saved = json.loads(path.read_text()) if path.exists() else {}
    if 'settings' in saved:
      saved = {**saved['settings'], 'results': {
          name: saved[name] for name in saved['settings']['methods']}}
    if saved.get('key') == key:
      done = {'key': key, 'range_test': saved['range_test'],
              'results': saved['results']}
      print(f'Resuming: {", ".join(saved["results"]) or "the range test"} '
            f'done ({path}).', flush=True)
  if 'range_test' not in done:
    bounds, _ = range_test.measure(
        reference, min_lr=1e-4, max_lr=10.0, num_steps=args.range_steps,
        power_iterations=args.power_iterations, dataset=dataset)
    done = {'key': key, 'results': {}, 'range_test': {
        k: v for k, v in bounds.items() if k not in ('learning_rates',
                                                      'losses')}}
  bounds = done['range_test']
  print(f'Range test: L_min = {bounds["suggested_min"]:.4g}, L_max = '
        f'{bounds["suggested_max"]:.4g} (lowest smoothed loss at '
        f'{bounds["min_loss_lr"]:.4g}); beta = {bounds["beta"]:.4g}.',
        flush=True)
  every = methods(args.num_epochs, (bounds['suggested_min'],
                                    bounds['suggested_max']))
  chosen = _select(every, args.schedules)
  results = done['results']
  for name, overrides in chosen.items():
    if name in results:
      continue
    start = time.perf_counter()
    runner = seeds.SeedRunner(run_config_for(args, overrides),
                              dataset=dataset)
    with tqdm.tqdm(total=args.num_epochs, desc=name, unit='epoch',
                   file=sys.stderr, dynamic_ncols=True) as bar:
      out = runner.run(seed_list, progress=lambda epoch: bar.update())
    results[name] = _summarize(out['train_loss'], out['test_accuracy'],
                               out['test_loss'])
    # Seed 0's rates, to draw the schedule, and each seed's training loss
    # averaged over blocks of steps, to draw it by step.
    results[name]['learning_rate_seed0'] = out['lr'][0].tolist()
    results[name].update(_loss_blocks(out['step_loss'], runner.steps_per_epoch))
    if name == 'plrs':
      end = jax.tree.map(lambda x: x[0], runner.final)
      results[name]['beta_at_end_seed0'] = range_test.top_eigenvalue(
          runner.config, dataset, end['params'], end['batch_stats'],
          power_iterations=args.power_iterations).eigenvalue
    results[name]['seconds'] = time.perf_counter() - start
    results[name]['commit'] = common.git_commit()[0]
    print(f'{name}: {time.perf_counter() - start:.1f} s, final test accuracy '
          f'{100 * np.mean(results[name]["test_accuracy"]):.2f}%', flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    workdirs.atomic_write_text(_partial_path(args), json.dumps(done))
  settings = {
      'mode': 'seeds vmapped (train/seeds.py), paired: seed s starts from '
              'the same parameters and reads the same batches in every '
              'method',
      'dataset': args.dataset, 'model': args.model,
      'batch_size': args.batch_size, 'num_epochs': args.num_epochs,
      'train_subset': args.train_subset or len(dataset.train),
      'test_examples': len(dataset.test), 'seeds': seed_list,
      'steps_per_epoch': input_pipeline.steps_per_epoch(dataset,
                                                        args.batch_size),
      'optimizer': 'plain SGD (no momentum, no weight decay) unless the '
                   "method's recipe says otherwise",
      'range_test': bounds,
      'default_plrs_bounds': [default.SCHEDULES['plrs']['min_value'],
                              default.SCHEDULES['plrs']['max_value']],
      'methods': {name: every[name] for name in results},
      'key': key,
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
      'train_loss': train_loss[:, -1].tolist(),
      'train_loss_curve': train_loss.tolist(),
      'test_accuracy_curve': test_accuracy.tolist(),
      'test_loss': np.asarray(test_loss).tolist(),
  }


def _loss_blocks(step_loss, steps_per_epoch: int, per_epoch: int = 15):
  """Each seed's training loss averaged over blocks of about 1/15 epoch."""
  step_loss = np.asarray(step_loss, float)
  block = max(1, steps_per_epoch // per_epoch)
  blocks = step_loss.shape[1] // block
  means = step_loss[:, :blocks * block].reshape(len(step_loss), blocks,
                                                  block).mean(axis=2)
  return {'train_loss_blocks': means.tolist(),
          'train_loss_block_end_steps': (block * np.arange(1, blocks + 1)
                                         ).tolist()}


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
                 _mean_sd(r['train_loss'], digits=4)])
  return common.markdown_table(
      ['schedule', 'seeds', 'final test acc % mean (SD)',
       'best test acc % mean (SD)', 'final test acc % max',
       'final train loss mean (SD)'], rows)


def paired_differences(results: dict, field: str = 'test_accuracy',
                       reference: str = 'plrs') -> dict[str, dict]:
  """PLRS minus each method, seed by seed: mean and 95% t-interval.

  The seeds are paired (same initial parameters and batches), so the
  difference of seed s's accuracies removes what the seeds share. With n
  seeds the interval is mean +- t(0.975, n - 1) * SD / sqrt(n), which
  covers the true mean difference 95% of the time if the differences are
  normal.
  """
  base = np.asarray(results[reference][field], float)
  out = {}
  for name, r in results.items():
    if name == reference:
      continue
    d = base - np.asarray(r[field], float)
    half = (stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
            if d.size > 1 else float('nan'))
    out[name] = {'mean': float(d.mean()), 'ci95': [float(d.mean() - half),
                                                   float(d.mean() + half)]}
  return out


def paired_table(results: dict) -> str:
  """PLRS (range test) minus each method, final and best accuracy (points)."""
  final = paired_differences(results)
  best = paired_differences(results, 'best_test_accuracy')
  rows = [[name] + [f'{100 * d[name]["mean"]:+.2f} [{100 * d[name]["ci95"][0]:+.2f},'
                    f' {100 * d[name]["ci95"][1]:+.2f}]' for d in (final, best)]
          for name in final]
  return common.markdown_table(
      ['plrs minus', 'final test acc, points [95% CI]',
       'best test acc, points [95% CI]'], rows)


def plot(results: dict, settings: dict, path: pathlib.Path) -> pathlib.Path:
  """Training loss, test accuracy (mean +- SD band) and seed 0's rates."""
  fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
  # tab20's ten dark colours, then its ten light ones, dashed.
  tab20 = plt.get_cmap('tab20').colors
  colors = tab20[0::2] + tab20[1::2]
  # The training loss by blocks of steps where every method has them.
  by_step = all('train_loss_blocks' in r for r in results.values())
  for i, (name, r) in enumerate(results.items()):
    color = colors[i % len(colors)]
    style = '--' if i % len(colors) >= len(colors) // 2 else '-'
    for ax, key in ((axes[0], 'train_loss_blocks' if by_step
                     else 'train_loss_curve'),
                    (axes[1], 'test_accuracy_curve')):
      curves = np.asarray(r[key], float)
      x = (r['train_loss_block_end_steps'] if key == 'train_loss_blocks'
           else np.arange(1, curves.shape[1] + 1))
      mean = curves.mean(axis=0)
      sd = curves.std(axis=0, ddof=1) if curves.shape[0] > 1 else 0 * mean
      ax.plot(x, mean, style, color=color, lw=1.4,
              label=name if ax is axes[0] else None,
              marker='o' if len(x) < 5 else None)
      ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.15)
    rates = np.asarray(r.get('learning_rate_seed0', []), float)
    steps = r.get('learning_rate_seed0_steps', np.arange(rates.size))
    if rates.size:
      # PLRS's rates jump every step: draw them faint, under the others.
      noisy = name.startswith('plrs')
      axes[2].plot(steps, rates, style, color=color, lw=0.4 if noisy else 1.2,
                   alpha=0.45 if noisy else 0.9, zorder=1 if noisy else 2)
  axes[0].set(yscale='log', xlabel='step' if by_step else 'epoch',
              ylabel='training loss (mean +- SD)')
  axes[1].set(xlabel='epoch', ylabel='test accuracy (mean +- SD)')
  accuracy = np.concatenate([np.asarray(r['test_accuracy_curve'], float)[:, -1]
                             for r in results.values()])
  if accuracy.size:
    axes[1].set_ylim(max(0.0, np.nanmin(accuracy) - 0.05), 1.0)
  axes[2].set(xlabel='step', ylabel='learning rate (seed 0)')
  for ax in axes:
    ax.grid(alpha=0.3)
  # One legend for the three panels, beside them.
  fig.legend(*axes[0].get_legend_handles_labels(), loc='center left',
             bbox_to_anchor=(0.885, 0.5), fontsize=8)
  fig.suptitle(
      f'{settings["model"]} on {settings["dataset"]}, batch '
      f'{settings["batch_size"]}, {settings["num_epochs"]} epochs, '
      f'{len(settings["seeds"])} seeds per schedule', fontsize=11)
  fig.tight_layout(rect=(0, 0, 0.885, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _defaults(args) -> None:
  """Fills the flags left unset from the dataset's settings (or --quick's)."""
  if args.dataset not in DATASETS:
    sys.exit(f'error: unknown --dataset={args.dataset}; choose from '
             f'{", ".join(DATASETS)}.')
  chosen = {**DATASETS[args.dataset], 'range_steps': 100,
            'power_iterations': 100, **(QUICK if args.quick else {})}
  for field, value in chosen.items():
    if getattr(args, field, None) is None:
      setattr(args, field, value)
  args.name = NAME if args.dataset == 'digits' else f'{NAME}_{args.dataset}'


def main():
  args = common.parse_args(__doc__.splitlines()[0], _extra_flags)
  if args.config is None:
    _defaults(args)
    name = args.name
    results, settings = run_vmapped(args)
  else:
    name = f'{NAME}_{args.config.stem}'
    results, settings = run_config(args)
  if not results:
    sys.exit('error: no run finished.')
  print()
  print(table(results))
  if 'plrs' in results and len(settings['seeds']) > 1:
    print()
    print(paired_table(results))
  if 'range_test' in settings:
    bounds = settings['range_test']
    print(f'\nplrs: range-test bounds [{bounds["suggested_min"]:.4g}, '
          f'{bounds["suggested_max"]:.4g}]; plrs_default: '
          f'{settings["default_plrs_bounds"]}. '
          f'At initialisation, beta = {bounds["beta"]:.4g}: '
          f'{bounds.get("check", "")}')
    end_beta = results.get('plrs', {}).get('beta_at_end_seed0')
    if end_beta is not None and end_beta > 0:
      check = curvature.check_bounds(bounds['suggested_max'], end_beta)
      print(f"At the end of seed 0's plrs run, beta = {end_beta:.4g}: "
            f'{check.explanation}')
  path = common.write_results(
      name, {**results, 'settings': settings}, args.out, quick=args.quick)
  figure = plot(results, settings, args.out / f'{name}.png')
  if args.config is None:
    _partial_path(args).unlink(missing_ok=True)
  print(f'\nResults: {path}\nFigure: {figure}')


if __name__ == '__main__':
  main()
