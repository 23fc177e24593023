"""PLRS against the paper's baselines and the other methods, paired seeds.

Without --config, every method of `methods` trains S seeds in one vmapped
program (train/seeds.py): seed s starts from the same parameters and reads
the same batches under every method; PLRS's bounds come from the LR range
test on this model and data. Resumable: an interrupted run keeps the methods
it finished (OUT/NAME.partial.json) and says the command that resumes it.
With --config, every schedule of that train/configs file and every seed is
one `train.train_and_evaluate` run (the paper's Tables 1-3, given a GPU and
the TFDS dataset), resumed from --workdir. Prints mean (SD) over seeds and
PLRS's paired differences.

    python -m benchmarks.schedulers [--dataset=digits|fashion_mnist] [--quick]
        [--out DIR] [--num_epochs N] [--num_seeds S] [--schedules a,b]
    python -m benchmarks.schedulers --config=train/configs/<setting>.py \\
        [--num_epochs N] [--num_seeds S] [--schedules a,b] [--workdir DIR]
"""

import json
import importlib.util
import pathlib
import sys
import time

import jax
import numpy as np
from scipy import stats
import tqdm

from benchmarks import common
from benchmarks.common import plt
from plrs_jax import curvature
from train import config_validation
from train import input_pipeline
from train import plots
from train import range_test
from train import seeds
from train import train
from train import workdir as workdir_lib
from train.configs import default

NAME = 'schedulers'
# Per dataset: model, batch size, epochs, training subset (0: all), seeds.
# Fashion-MNIST fits 13 methods into 90 minutes on a quiet 2-core CPU, about
# 400 s each: 5 vmapped seeds of ResNet-8 train at about 740 images/s in all
# at batch 32 as at 128, and testing them on 10,000 images takes 16 s, so E
# epochs of N images cost E * (5 N / 740 + 16) s. N = 12,000 (1,200 a class)
# and E = 3 (default.py's epochs: no schedule is rescaled) took 309 to 389 s
# a method, 75 minutes in all. At batch 128, 6 epochs of 4,000 images left
# every method near 70%, the training loss near 0.8: too short to tell.
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
FLAGS = dict(
    dataset=dict(default='digits', choices=list(DATASETS)),
    data_dir=dict(help="where the dataset's files are"),
    batch_size=dict(type=common.integer(1),
                    help="batch size (default: the dataset's)"),
    train_subset=dict(type=common.integer(0),
                      help='training images (0: all)'),
    config=dict(type=pathlib.Path, help='a train/configs file: run its '
                'SCHEDULES through train.train_and_evaluate, seed by seed'),
    num_epochs=dict(type=common.integer(1),
                    help='epochs (digits: 30; --config: its own)'),
    num_seeds=dict(type=common.integer(1),
                   help='seeds per method (digits: 5; --config: 3)'),
    seed=dict(type=common.integer(0), default=0, help='first seed'),
    schedules=dict(help='comma-separated subset of the schedules'),
    model=dict(help="a train/models.py model (default: the dataset's; "
               '--quick: mlp)'),
    workdir=dict(type=pathlib.Path, help='--config only: where the runs live'))


def paper_schedules(num_epochs: int,
                    plrs_bounds: tuple[float, float]) -> dict[str, dict]:
  """default.py's SCHEDULES by name, their epoch-valued fields rescaled from
  its 3 epochs to E = `num_epochs`; 'plrs' at `plrs_bounds` (L_min, L_max),
  'plrs_default' at default.py's hand pair."""
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
  """Every method as config overrides: the schedules with plain SGD, then
  SGD at 0.1 switching to Adam at E/2 (two_regime), with AutoDrop (plain and
  with its authors' recipe) and with MLR-SNet's shipped net."""
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
  for field in ('dataset', 'data_dir', 'model', 'num_epochs', 'batch_size',
                'train_subset', 'seed'):
    config[field] = getattr(args, field)
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


def _resumed(args, key: dict) -> dict:
  """What a finished run (to add methods to) or an interrupted one of the
  same `key` holds: {'key', 'range_test', 'results'}, or {}."""
  done = {}
  for path in (args.out / f'{args.name}.json', _partial_path(args)):
    saved = json.loads(path.read_text()) if path.exists() else {}
    if 'methods' in saved.get('settings', {}):
      saved = {**saved['settings'], 'results': {
          name: saved[name] for name in saved['settings']['methods']}}
    elif 'settings' in saved:
      saved = {}  # written before results recorded their key: a fresh run
    if saved.get('key') == key:
      done = {'key': key, 'range_test': saved['range_test'],
              'results': saved['results']}
      print(f'Resuming: {", ".join(saved["results"]) or "the range test"} '
            f'done ({path}).', flush=True)
  return done


def run_vmapped(args) -> tuple[dict, dict]:
  """Every method on an in-memory dataset, the seeds of each vmapped; the
  results so far go to OUT/NAME.partial.json after each method."""
  seed_list = list(range(args.seed, args.seed + args.num_seeds))
  reference = run_config_for(args, {'schedule': default.SCHEDULES['plrs']})
  dataset = input_pipeline.dataset_from_config(reference)
  # The chosen methods' configs checked before the range test trains (the
  # bounds it sets are valid ones).
  candidates = methods(args.num_epochs, (0.07, 0.1))
  names = list(_select(candidates, args.schedules))
  for name in names:
    seeds.checked_steps_per_epoch(run_config_for(args, candidates[name]),
                                  dataset)
  key = {field: getattr(args, field) for field in (
      'dataset', 'model', 'num_epochs', 'batch_size', 'train_subset',
      'num_seeds', 'seed', 'quick')}
  done = _resumed(args, key)
  common.on_stop(lambda: _saved(args))
  if 'range_test' not in done:
    bounds, _ = range_test.measure(
        reference, min_lr=1e-4, max_lr=10.0, num_steps=args.range_steps,
        power_iterations=args.power_iterations, dataset=dataset)
    done = {'key': key, 'results': {}, 'range_test': {
        k: v for k, v in bounds.items()
        if k not in ('learning_rates', 'losses')}}
  bounds, results = done['range_test'], done['results']
  print(f'Range test: L_min = {bounds["suggested_min"]:.4g}, L_max = '
        f'{bounds["suggested_max"]:.4g} (lowest smoothed loss at '
        f'{bounds["min_loss_lr"]:.4g}); beta = {bounds["beta"]:.4g}.',
        flush=True)
  every = methods(args.num_epochs, (bounds['suggested_min'],
                                    bounds['suggested_max']))
  for name in names:
    if name in results:
      continue
    start = time.perf_counter()
    runner = seeds.SeedRunner(run_config_for(args, every[name]),
                              dataset=dataset)
    with tqdm.tqdm(total=args.num_epochs, desc=name, unit='epoch',
                   file=sys.stderr, dynamic_ncols=True) as bar:
      out = runner.run(seed_list, progress=lambda epoch: (
          bar.update(), common.check_stopped()))
    # Seed 0's rates, to draw the schedule, and each seed's training loss
    # averaged over blocks of steps, to draw it by step.
    r = {**_summarize(out), 'learning_rate_seed0': out['lr'][0].tolist(),
         **_loss_blocks(out['step_loss'], runner.steps_per_epoch)}
    if name == 'plrs':
      end = jax.tree.map(lambda x: x[0], runner.final)
      r['beta_at_end_seed0'] = range_test.top_eigenvalue(
          runner.config, dataset, end['params'], end['batch_stats'],
          power_iterations=args.power_iterations).eigenvalue
    r.update(seconds=time.perf_counter() - start,
             commit=common.CODE[0])
    print(f'{name}: {r["seconds"]:.1f} s, final test accuracy '
          f'{100 * np.mean(r["test_accuracy"]):.2f}%', flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    # Saved, then counted: a stop in between says one method too few.
    workdir_lib.atomic_write_text(_partial_path(args), json.dumps(
        {**done, 'results': {**results, name: r}}))
    results[name] = r
  return results, {
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
      'methods': {name: every[name] for name in results}, 'key': key}


def _saved(args) -> str:
  """What an interrupted vmapped run kept (`common.on_stop`)."""
  path = _partial_path(args)
  saved = json.loads(path.read_text())['results'] if path.exists() else {}
  if not saved:
    return 'no method had finished: nothing is saved.'
  return (f'the results of {", ".join(saved)} are saved in {path}; '
          f'`{common.resume_command(args)}` resumes from them.')


def load_config_module(path: pathlib.Path):
  """Imports a train/configs file (it must define SCHEDULES, get_config)."""
  spec = importlib.util.spec_from_file_location(
      f'_schedulers_config_{path.stem}', path)
  if spec is None or not path.is_file():
    raise common.UsageError(f'--config {path}: no such config file.')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for attr in ('SCHEDULES', 'get_config'):
    if not hasattr(module, attr):
      raise common.UsageError(f'--config {path} defines no {attr}.')
  return module


def run_config(args) -> tuple[dict, dict]:
  """Every schedule of a config file and seed, through train_and_evaluate."""
  module = load_config_module(args.config)
  names = list(_select(module.SCHEDULES, args.schedules))
  seed_list = list(range(args.seed, args.seed + (args.num_seeds or 3)))
  workdir = args.workdir or args.out / f'{NAME}_runs_{args.config.stem}'

  def config_of(name, seed):
    config = module.get_config(name)
    config.seed = seed
    if args.num_epochs:
      config.num_epochs = args.num_epochs
    return config

  for name in names:
    config_validation.validate(config_of(name, args.seed))
  common.on_stop(lambda: (
      f'the runs are in {workdir}, each with its checkpoints; '
      f'`{common.resume_command(args)}` resumes them.'))
  results, errors = {}, {}
  for name in names:
    curves = []
    for seed in seed_list:
      run_dir = workdir / name / f'seed_{seed}'
      print(f'{name}, seed {seed}: {run_dir}', flush=True)
      try:
        result = train.train_and_evaluate(config_of(name, seed), str(run_dir))
      except train.TrainingDiverged as e:
        errors.setdefault(name, []).append(f'seed {seed}: {e}')
        print(f'  diverged: {e}', flush=True)
        continue
      if result.metrics['signal']:
        raise common.Stopped(result.metrics['signal'])
      steps, epochs = plots.read_metrics(run_dir / 'metrics.jsonl')
      curves.append({key: [r[key] for r in epochs] for key in (
          'train_loss', 'test_accuracy', 'test_loss')})
      curves[-1].update(lr=[r['lr'] for r in steps],
                        lr_steps=[r['step'] for r in steps])
    if curves:
      length = min(len(c['train_loss']) for c in curves)
      results[name] = {**_summarize({k: [c[k][:length] for c in curves] for k
                                     in ('train_loss', 'test_accuracy',
                                         'test_loss')}),
                       'learning_rate_seed0': curves[0]['lr'],
                       'learning_rate_seed0_steps': curves[0]['lr_steps']}
  reference = module.get_config(names[0])
  return results, {
      'mode': 'config file, sequential train.train_and_evaluate runs',
      'config': str(args.config), 'dataset': reference.dataset,
      'model': reference.model, 'batch_size': reference.batch_size,
      'num_epochs': args.num_epochs or reference.num_epochs,
      'seeds': seed_list, 'workdir': str(workdir),
      'schedules': {n: dict(module.SCHEDULES[n]) for n in names},
      'errors': errors}


def _select(schedules: dict, subset: str | None) -> dict:
  names = [n.strip() for n in (subset or '').split(',') if n.strip()]
  unknown = [n for n in names if n not in schedules]
  if unknown:
    raise common.UsageError(f'unknown schedules {unknown}; choose from '
                            f'{", ".join(schedules)}.')
  return {n: schedules[n] for n in names or schedules}


def _summarize(curves) -> dict:
  """(seeds, epochs) 'train_loss', 'test_accuracy' and 'test_loss' curves ->
  the JSON fields of one schedule."""
  train_loss, test_accuracy = (np.asarray(curves[k]) for k in (
      'train_loss', 'test_accuracy'))
  return {
      'test_accuracy': test_accuracy[:, -1].tolist(),
      'best_test_accuracy': test_accuracy.max(axis=1).tolist(),
      'train_loss': train_loss[:, -1].tolist(),
      'train_loss_curve': train_loss.tolist(),
      'test_accuracy_curve': test_accuracy.tolist(),
      'test_loss': np.asarray(curves['test_loss']).tolist(),
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


def print_tables(results: dict) -> None:
  """Mean (SD over seeds) of the final and best accuracy and final loss, and
  PLRS's paired differences to each method where there are seeds to pair."""
  common.print_table(
      ['schedule', 'seeds', 'final test acc % mean (SD)',
       'best test acc % mean (SD)', 'final test acc % max',
       'final train loss mean (SD)'],
      [[name, len(r['test_accuracy']), _mean_sd(r['test_accuracy'], 100),
        _mean_sd(r['best_test_accuracy'], 100),
        f'{100 * max(r["test_accuracy"]):.2f}',
        _mean_sd(r['train_loss'], digits=4)] for name, r in results.items()])
  if 'plrs' not in results or len(results['plrs']['test_accuracy']) < 2:
    return
  final, best = (paired_differences(results, field)
                 for field in ('test_accuracy', 'best_test_accuracy'))
  common.print_table(
      ['plrs minus', 'final test acc, points [95% CI]',
       'best test acc, points [95% CI]'],
      [[name] + ['{:+.2f} [{:+.2f}, {:+.2f}]'.format(
          100 * d[name]['mean'], *np.multiply(100, d[name]['ci95']))
                 for d in (final, best)] for name in final])


def paired_differences(results: dict, field: str = 'test_accuracy',
                       reference: str = 'plrs') -> dict[str, dict]:
  """PLRS minus each method, seed by seed (the seeds are paired): mean and
  95% t-interval."""
  base = np.asarray(results[reference][field], float)
  out = {}
  for name, r in results.items():
    if name != reference and len(r[field]) == base.size:
      other = np.asarray(r[field], float)
      interval = stats.ttest_rel(base, other).confidence_interval()
      out[name] = {'mean': float(np.mean(base - other)),
                   'ci95': [float(interval.low), float(interval.high)]}
  return out


def plot(results: dict, settings: dict):
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
  return fig


def _defaults(args) -> None:
  """Fills the flags left unset from the dataset's settings (or --quick's)."""
  chosen = {**DATASETS[args.dataset], 'range_steps': 100,
            'power_iterations': 100, **(QUICK if args.quick else {})}
  for field, value in chosen.items():
    if getattr(args, field, None) is None:
      setattr(args, field, value)
  args.name = NAME if args.dataset == 'digits' else f'{NAME}_{args.dataset}'


def main():
  args = common.parse_args(__doc__, **FLAGS)
  if args.config is None:
    _defaults(args)
    name = args.name
    results, settings = run_vmapped(args)
  else:
    name = f'{NAME}_{args.config.stem}'
    results, settings = run_config(args)
  if not results:
    sys.exit('error: no run finished.')
  print_tables(results)
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
  common.finish(name, {**results, 'settings': settings},
                plot(results, settings), args)
  if args.config is None:
    _partial_path(args).unlink(missing_ok=True)


if __name__ == '__main__':
  common.start(main)
