"""S seeds in one vmapped program against S sequential runs, on digits.

    python -m benchmarks.seeds_vmap [--quick] [--out DIR]

For S = 1, 2, 4, 8 seeds of a small model on scikit-learn's digits (ResNet-8
of train/models.py and the MLP of benchmarks/workloads.py), one training epoch
of all S seeds as one `jax.vmap`ped, jitted `lax.scan` (benchmarks/seeds.py)
is timed against S epochs of the same program compiled for one seed, run one
after another. Both are timed after a warm-up epoch (no compilation), in
interleaved rounds; the throughput is training examples per second summed
over the seeds, and the ratio is vmapped / sequential.

To explain the ratio it also measures:

* the FLOPs of one step (XLA's cost analysis) and the rate they run at,
  against a 1024^3 matrix product, the most this machine gives;
* the ratio at S = 8 with smaller per-seed batches (less work per step), and
  from the single-seed times a fit of the time per step to `c + d * B`
  (B the batch): `c` is the part that does not grow with the batch (per-step
  overhead, and the work on parameters: weight gradients' writes, the SGD
  update), `d` the work per example. If vmap shared exactly `c` between the
  seeds and did the rest S times, the ratio at S seeds would be
  `S (c + d B) / (c + S d B)`;
* a batched matrix product alone, (S, 32, 64) x (S, 64, 256) in a scan, for
  S = 1 and 8: how its cost grows with the seeds;
* the convolution inside the scan as `lax.conv_general_dilated` against the
  im2col form seeds.py uses (see its docstring for XLA:CPU's slow path).

Writes OUT/seeds_vmap.json and OUT/seeds_vmap.png.
"""

import time

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker
import numpy as np

from benchmarks import common
from benchmarks import seeds
from train import input_pipeline
from train.configs import default

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

NAME = 'seeds_vmap'
GOAL_SEEDS, GOAL_RATIO = 8, 3.0


def _runner(trainer: seeds.SeedTrainer, seed_groups: list[list[int]]):
  """A function running one epoch of every group, one group after another.

  Each group is one program call (the vmapped program when a group has
  several seeds); the states are donated and threaded through the calls.
  """
  states = [trainer.init(jnp.asarray(group, jnp.int32))
            for group in seed_groups]
  epoch = [0]

  def run():
    for i, state in enumerate(states):
      states[i], _ = trainer.train_epoch(state, jnp.int32(epoch[0]))
    epoch[0] += 1
    return states

  return run


def compare(trainer: seeds.SeedTrainer, num_seeds: int, rounds: int) -> dict:
  """Times S seeds vmapped against S sequential single-seed epochs."""
  seed_list = list(range(num_seeds))
  times = common.time_interleaved({
      'vmapped': _runner(trainer, [seed_list]),
      'sequential': _runner(trainer, [[s] for s in seed_list]),
  }, rounds=rounds)
  examples = num_seeds * trainer.steps_per_epoch * trainer.batch_size
  vmapped, sequential = (float(np.median(times[k]))
                         for k in ('vmapped', 'sequential'))
  seed_steps = num_seeds * trainer.steps_per_epoch
  return {
      'vmapped_ms_per_seed_step': 1e3 * vmapped / seed_steps,
      'sequential_ms_per_seed_step': 1e3 * sequential / seed_steps,
      'num_seeds': num_seeds,
      'vmapped_epoch_s': times['vmapped'].tolist(),
      'sequential_epoch_s': times['sequential'].tolist(),
      'vmapped_examples_per_s': examples / vmapped,
      'sequential_examples_per_s': examples / sequential,
      'ratio': sequential / vmapped,
  }


def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
  """GFLOP/s of a jitted size^3 float32 matrix product on this machine."""
  a = jax.random.normal(jax.random.key(0), (size, size))
  product = jax.jit(lambda a: a @ a)
  jax.block_until_ready(product(a))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(product(a))
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best / 1e9


def fit_per_step(batch_sizes, seconds_per_seed_step, num_seeds):
  """Fits single-seed time per step to `c + d * B`; the bound it implies.

  Args:
    batch_sizes: the per-seed batch sizes B.
    seconds_per_seed_step: the sequential (single-seed program) time per step
      at each B.
    num_seeds: S for the bound.

  Returns:
    `c` and `d` in ms, and for each B the ratio vmap would reach if it shared
    exactly `c` between the seeds and did the rest S times (an estimate, not
    a bound: vmap may also run the per-example work faster or slower).
  """
  d, c = np.polyfit(np.asarray(batch_sizes, float),
                    np.asarray(seconds_per_seed_step), 1)
  c, d = max(c, 0.0), max(d, 1e-12)
  return {
      'fixed_ms_per_step': 1e3 * c, 'ms_per_example': 1e3 * d,
      'batch_sizes': list(batch_sizes),
      'ratio_if_fixed_part_shared': [
          num_seeds * (c + d * b) / (c + num_seeds * d * b)
          for b in batch_sizes],
  }


def batched_matmul_scaling(seed_counts=(1, 8), shape=(32, 64, 256),
                           length: int = 200) -> dict:
  """Microseconds per seed of a vmapped (B, K) x (K, N) product in a scan.

  Flat in S means XLA runs the batched product as S separate products: vmap
  then saves nothing on matrix work.
  """
  b, k, n = shape
  per_seed = {}
  for count in seed_counts:
    x = jax.random.normal(jax.random.key(0), (count, b, k))
    w = jax.random.normal(jax.random.key(1), (count, k, n)) / np.sqrt(k)

    @jax.jit
    def loop(x, w):
      def body(x, _):
        y = jnp.tanh(jnp.einsum('sbk,skn->sbn', x, w))
        return y[..., :k], None
      return jax.lax.scan(body, x, None, length=length)[0]

    jax.block_until_ready(loop(x, w))
    best = float('inf')
    for _ in range(5):
      start = time.perf_counter()
      jax.block_until_ready(loop(x, w))
      best = min(best, time.perf_counter() - start)
    per_seed[str(count)] = 1e6 * best / length / count
  return {'shape': list(shape), 'us_per_seed': per_seed}


def plot(results: dict, path):
  """Throughput against S, vmapped and sequential, one panel per model."""
  models = list(results['models'])
  fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2),
                           squeeze=False)
  for ax, name in zip(axes[0], models):
    rows = results['models'][name]['by_seeds']
    counts = [r['num_seeds'] for r in rows]
    ax.plot(counts, [r['vmapped_examples_per_s'] for r in rows], 'o-',
            label='vmapped (one program)')
    ax.plot(counts, [r['sequential_examples_per_s'] for r in rows], 's--',
            label='sequential (S programs)')
    for r in rows:
      ax.annotate(f'{r["ratio"]:.2f}x', (r['num_seeds'],
                                         r['vmapped_examples_per_s']),
                  textcoords='offset points', xytext=(0, 7), ha='center',
                  fontsize=8)
    batch = results['config']['batch_size']
    top = max(max(r['vmapped_examples_per_s'], r['sequential_examples_per_s'])
              for r in rows)
    ax.set(xscale='log', xlabel='seeds S',
           ylabel='training examples / s (all seeds)',
           title=f'{name} on digits, batch {batch} per seed',
           ylim=(0, 1.2 * top))
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle('S seeds: one vmapped program vs S sequential runs (labels: '
               'throughput ratio vmapped / sequential)',
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def main():
  args = common.parse_args(__doc__.splitlines()[0])
  quick = args.quick
  batch_size = 32
  seed_counts = [1, 2] if quick else [1, 2, 4, 8]
  model_names = ['mlp'] if quick else ['resnet8', 'mlp']
  small_batches = [8] if quick else [4, 8]
  rounds = 1 if quick else 5
  schedule = default.SCHEDULES['plrs']
  dataset = input_pipeline.load_dataset('digits')
  peak = matmul_gflops(256 if quick else 1024)

  def trainer(model, batch=batch_size, conv='im2col'):
    return seeds.SeedTrainer(schedule, num_epochs=1, batch_size=batch,
                             model=model, dataset=dataset, conv=conv)

  results = {
      'config': {'dataset': 'digits', 'batch_size': batch_size,
                 'schedule': schedule, 'seed_counts': seed_counts,
                 'rounds': rounds, 'goal': {'num_seeds': GOAL_SEEDS,
                                            'ratio': GOAL_RATIO}},
      'matmul_gflops': peak,
      'models': {},
  }
  rows = []
  for name in model_names:
    t = trainer(name)
    flops = t.step_flops()
    by_seeds = []
    for count in seed_counts:
      row = compare(t, count, rounds)
      row['vmapped_gflops'] = (row['vmapped_examples_per_s'] / batch_size
                               * flops / 1e9)
      row['sequential_gflops'] = (row['sequential_examples_per_s']
                                  / batch_size * flops / 1e9)
      by_seeds.append(row)
      rows.append([name, count, row['vmapped_examples_per_s'],
                   row['sequential_examples_per_s'], row['ratio'],
                   row['vmapped_ms_per_seed_step'],
                   row['sequential_ms_per_seed_step'],
                   row['vmapped_gflops'], row['sequential_gflops']])
      print(f'{name} S={count}: ratio {row["ratio"]:.2f}', flush=True)
    results['models'][name] = {
        'steps_per_epoch': t.steps_per_epoch,
        'step_flops_per_seed': flops,
        'by_seeds': by_seeds,
    }
    del t

  # Less work per step and seed: the shared per-step cost weighs more.
  count = max(seed_counts)
  sweep_rows = []
  results['batch_sweep'] = {}
  for name in model_names:
    entries = []
    for batch in small_batches:
      t = trainer(name, batch)
      row = compare(t, count, max(1, rounds - 2))
      row['batch_size'] = batch
      entries.append(row)
      sweep_rows.append([name, batch, count, row['vmapped_examples_per_s'],
                         row['sequential_examples_per_s'], row['ratio']])
      print(f'{name} batch {batch} S={count}: ratio {row["ratio"]:.2f}',
            flush=True)
    results['batch_sweep'][name] = entries
    # Single-seed time per step against the batch, including batch_size.
    main_row = [r for r in results['models'][name]['by_seeds']
                if r['num_seeds'] == count][0]
    sizes = small_batches + [batch_size]
    per_step = [r['sequential_ms_per_seed_step'] / 1e3
                for r in entries + [main_row]]
    results['models'][name]['per_step_fit'] = fit_per_step(sizes, per_step,
                                                           count)
  results['batched_matmul'] = batched_matmul_scaling()

  # The convolution inside the scan: XLA's own against im2col, one seed.
  if not quick:
    conv_times = common.time_interleaved({
        'xla': _runner(trainer('resnet8', conv='xla'), [[0]]),
        'im2col': _runner(trainer('resnet8'), [[0]]),
    }, rounds=1)
    steps = trainer('resnet8').steps_per_epoch
    results['conv_in_scan'] = {
        'model': 'resnet8', 'batch_size': batch_size, 'num_seeds': 1,
        'xla_ms_per_step': 1e3 * float(conv_times['xla'][0]) / steps,
        'im2col_ms_per_step': 1e3 * float(conv_times['im2col'][0]) / steps,
    }

  goal = {}
  for name, entry in results['models'].items():
    at_goal = [r for r in entry['by_seeds'] if r['num_seeds'] == GOAL_SEEDS]
    if at_goal:
      goal[name] = {'ratio': at_goal[0]['ratio'],
                    'met': at_goal[0]['ratio'] >= GOAL_RATIO}
  results['goal_met'] = goal

  print()
  print(common.markdown_table(
      ['model', 'S', 'vmapped ex/s', 'sequential ex/s', 'vmapped/sequential',
       'vmapped ms/(seed step)', 'sequential ms/(seed step)',
       'vmapped GFLOP/s', 'sequential GFLOP/s'], rows))
  print(f'\nA jitted {256 if quick else 1024}^3 matmul runs at {peak:.4g} '
        'GFLOP/s here.')
  for name, entry in results['models'].items():
    fit = entry['per_step_fit']
    bounds = ', '.join(
        f'B={b}: {r:.2f}x' for b, r in
        zip(fit['batch_sizes'], fit['ratio_if_fixed_part_shared']))
    print(f'{name}: {entry["step_flops_per_seed"] / 1e6:.4g} MFLOP per step '
          f'and seed; one seed takes {fit["fixed_ms_per_step"]:.3g} ms + '
          f'{fit["ms_per_example"]:.3g} ms per example per step; sharing '
          f'exactly the fixed part would give {bounds} at S={count}.')
  matmul = results['batched_matmul']
  print('Batched (S, 32, 64) x (S, 64, 256) product in a scan: ' + ', '.join(
      f'S={k}: {v:.3g} us per seed' for k, v in matmul['us_per_seed'].items())
        + '.')
  print()
  print(common.markdown_table(
      ['model', 'batch per seed', 'S', 'vmapped ex/s', 'sequential ex/s',
       'vmapped/sequential'], sweep_rows))
  if 'conv_in_scan' in results:
    conv = results['conv_in_scan']
    print(f'\nresnet8 step inside lax.scan, one seed: lax.conv '
          f'{conv["xla_ms_per_step"]:.3g} ms, im2col '
          f'{conv["im2col_ms_per_step"]:.3g} ms.')
  for name, g in goal.items():
    print(f'Goal (>= {GOAL_RATIO}x at S = {GOAL_SEEDS}) for {name}: '
          f'{"met" if g["met"] else "not met"} ({g["ratio"]:.2f}x).')
  path = common.write_results(NAME, results, args.out, quick=quick)
  figure = plot(results, args.out / f'{NAME}.png')
  print(f'\nResults: {path}\nFigure: {figure}')


if __name__ == '__main__':
  main()
