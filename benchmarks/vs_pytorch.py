"""JAX/XLA against the paper authors' PyTorch loop on CPU: ResNet-20 and an MLP.

    python -m benchmarks.vs_pytorch [--quick] [--out DIR] [--xla_flags FLAGS]

The CIFAR ResNet-20 and the 784-256-256-10 MLP of train/models.py, batch 128
of random data (benchmarks/workloads.py), plain SGD, PLRS
(L_min 0.07, L_max 0.1) or a constant rate of 0.1, six ways:

* JAX: one jitted step (train/engine.py's `train_step`, the step every
  program runs), `optax.sgd(plrs_jax.plrs_schedule(key, 0.07, 0.1))`
  (the rate drawn inside the compiled program from (key, step)) or
  `optax.sgd(0.1)`, each compiled with XLA's defaults and with `--xla_flags`
  (default: YNNPACK fusions off, `--xla_cpu_experimental_ynn_fusion_type=`).
  The flags go to XLA per compilation, so both programs run in this process;
  the same string works as `XLA_FLAGS` for a training run.
* PyTorch eager, as the authors train: `torch.optim.SGD` and a scheduler that
  draws `np.random.uniform(L_min, L_max)` on the host and writes it into
  `param_groups[0]['lr']` after every step (`PaperPLRS`), or SGD at 0.1.

The PyTorch models mirror the Flax ones layer for layer and start from the
same weights, so both frameworks train the same network from the same point.
All candidates of a model run interleaved, round by round
(`common.time_interleaved`; a PyTorch step on the CPU is synchronous, so the
same timer serves it), and the table reports medians. The PyTorch scheduler
step's own cost is timed alone, over many calls.

Where XLA:CPU's time goes and the other settings tried: docs/xla_cpu.md.
`--quick` (ResNet-8, batch 8, 2 rounds) only checks that the program runs.
"""

import functools
import time
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks import workloads

PLRS_MIN, PLRS_MAX = 0.07, 0.1
CONSTANT_RATE = 0.1
YNNPACK_OFF = '--xla_cpu_experimental_ynn_fusion_type='


def parse_xla_flags(flags: str) -> dict[str, Any]:
  """XLA flags as compile options: '--a=1 --b=false' -> {'a': '1', 'b': False}.

  XLA parses a number given as a string, but a bool only as Python's bool.
  """
  options = {}
  for flag in flags.split():
    name, equals, value = flag.lstrip('-').partition('=')
    options[name] = ({'true': True, 'false': False}.get(value.lower(), value)
                     if equals else True)
  return options


class PaperPLRS:
  """PLRS as the authors schedule it: numpy's global RNG, first group only."""

  def __init__(self, optimizer, min_lr: float, max_lr: float):
    self.optimizer, self.min_lr, self.max_lr = optimizer, min_lr, max_lr

  def step(self) -> float:
    lr = np.random.uniform(self.min_lr, self.max_lr)
    self.optimizer.param_groups[0]['lr'] = lr
    return lr


@functools.cache
def _torch_modules():
  """PyTorch twins of the Flax models, their layers named as Flax names them."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the option-A shortcut, then ReLU."""

    def __init__(self, in_features, features, stride):
      super().__init__()
      self.Conv_0 = nn.Conv2d(in_features, features, 3, stride, 1, bias=False)
      self.BatchNorm_0 = nn.BatchNorm2d(features)
      self.Conv_1 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
      self.BatchNorm_1 = nn.BatchNorm2d(features)
      self.stride, self.extra = stride, features - in_features

    def forward(self, x):
      y = F.relu(self.BatchNorm_0(self.Conv_0(x)))
      y = self.BatchNorm_1(self.Conv_1(y))
      shortcut = x[:, :, ::self.stride, ::self.stride]
      if self.extra:  # zero channels, half before and half after
        shortcut = F.pad(shortcut, (0, 0, 0, 0, self.extra // 2,
                                    self.extra - self.extra // 2))
      return F.relu(y + shortcut)

  class CifarResNet(nn.Module):
    """train/models.py's CifarResNet, NCHW."""

    def __init__(self, depth, num_classes=10):
      super().__init__()
      self.stem_conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
      self.stem_bn = nn.BatchNorm2d(16)
      self.block_names, in_features = [], 16
      for stage, features in enumerate((16, 32, 64)):
        for block in range((depth - 2) // 6):
          name = f'stage{stage + 1}_block{block}'
          self.add_module(name, BasicBlock(
              in_features, features, 2 if stage and not block else 1))
          self.block_names.append(name)
          in_features = features
      self.classifier = nn.Linear(64, num_classes)

    def forward(self, x):
      x = F.relu(self.stem_bn(self.stem_conv(x)))
      for name in self.block_names:
        x = getattr(self, name)(x)
      return self.classifier(x.mean(dim=(2, 3)))

  class MLP(nn.Module):
    """train/models.py's MLP: 784-256-256-10 with ReLU."""

    def __init__(self):
      super().__init__()
      self.Dense_0, self.Dense_1 = nn.Linear(784, 256), nn.Linear(256, 256)
      self.classifier = nn.Linear(256, 10)

    def forward(self, x):
      x = F.relu(self.Dense_0(x.flatten(1)))
      return self.classifier(F.relu(self.Dense_1(x)))

  return torch, CifarResNet, MLP


def torch_twin(workload):
  """(model, images, labels): `workload` in PyTorch, with its parameters.

  `workload` is `workloads.workload(f'resnet{depth}')` or
  `workloads.workload('mlp')`, initialised as `workloads.train_state` does;
  the images are normalised as the JAX step normalises them, NCHW where the
  Flax ones are NHWC.
  """
  params = _initial_params(workload)
  torch, resnet, mlp = _torch_modules()
  model = (mlp() if workload.name == 'mlp' else
           resnet(depth=int(workload.name.removeprefix('resnet'))))
  with torch.no_grad():
    for path, module in model.named_modules():
      if not path or not hasattr(module, 'weight'):
        continue
      p = functools.reduce(lambda tree, k: tree[k], path.split('.'),
                           params)
      if isinstance(module, torch.nn.Conv2d):  # HWIO -> OIHW
        weight = np.transpose(p['kernel'], (3, 2, 0, 1))
      else:  # Dense: (in, out) -> (out, in); BatchNorm: scale
        weight = np.transpose(p['kernel']) if 'kernel' in p else p['scale']
      module.weight.copy_(torch.from_numpy(np.array(weight)))
      if module.bias is not None:
        module.bias.copy_(torch.from_numpy(np.array(p['bias'])))
  images = np.array((workload.batch['image'] - np.float32(
      workload.stats['mean'])) / np.float32(workload.stats['std']), np.float32)
  if images.shape[-1] == 3:
    images = images.transpose(0, 3, 1, 2)
  return (model, torch.from_numpy(np.ascontiguousarray(images)),
          torch.from_numpy(np.array(workload.batch['label'], np.int64)))


def _initial_params(workload):
  """The workload's initial parameters, as numpy arrays."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  return jax.device_get(workloads.train_state(workload, optax.sgd(0.1)).params)


def torch_step(model, images, labels, schedule: str):
  """One eager SGD step, PLRS the authors' way or constant; returns the loss."""
  torch = _torch_modules()[0]
  optimizer = torch.optim.SGD(model.parameters(), lr=CONSTANT_RATE)
  scheduler = (PaperPLRS(optimizer, PLRS_MIN, PLRS_MAX)
               if schedule == 'plrs' else None)

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
      scheduler.step()
    return loss.detach()

  return step


def jax_step(workload, schedule: str, compiler_options: dict[str, Any]):
  """A compiled SGD step carrying its own state; `step()` returns the loss."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import plrs_jax  # pylint: disable=g-import-not-at-top
  rate = (plrs_jax.plrs_schedule(jax.random.key(0), PLRS_MIN, PLRS_MAX)
          if schedule == 'plrs' else optax.constant_schedule(CONSTANT_RATE))
  state = [workloads.train_state(workload, optax.sgd(rate))]
  compiled = jax.jit(workloads.step(workload, rate), donate_argnums=0).lower(
      state[0], workload.batch).compile(compiler_options=compiler_options)

  def step():
    state[0], metrics = compiled(state[0], workload.batch)
    return metrics['loss']

  return step


def compare(workload, tuned: dict[str, Any], rounds: int,
            calls_per_round: int) -> dict[str, Any]:
  """The six candidates of one model, interleaved: timings and ratios."""
  candidates = {f'jax/{config}/{schedule}': jax_step(workload, schedule, flags)
                for config, flags in (('default', {}), ('tuned', tuned))
                for schedule in ('plrs', 'constant')}
  for schedule in ('plrs', 'constant'):
    candidates[f'torch/eager/{schedule}'] = torch_step(
        *torch_twin(workload), schedule)
  times = common.time_interleaved(candidates, rounds=rounds,
                                  calls_per_round=calls_per_round)
  batch_size = len(workload.batch['label'])
  runs = {key: {'median_ms': 1e3 * float(np.median(t)),
                'min_ms': 1e3 * float(np.min(t)),
                'images_per_s': batch_size / float(np.median(t)),
                'rounds_ms': [1e3 * float(s) for s in t]}
          for key, t in times.items()}
  ratios = {f'{config}/{schedule}': {'jax_over_torch_images_per_s': (
      runs[f'jax/{config}/{schedule}']['images_per_s']
      / runs[f'torch/eager/{schedule}']['images_per_s'])}
            for config in ('default', 'tuned')
            for schedule in ('plrs', 'constant')}
  for run in ('jax/default', 'jax/tuned', 'torch/eager'):
    ratios[f'{run}/plrs_over_constant_time'] = (
        runs[f'{run}/plrs']['median_ms'] / runs[f'{run}/constant']['median_ms'])
  return {'model': workload.name, 'batch_size': batch_size, 'runs': runs,
          'ratios': ratios}


def scheduler_cost(calls: int) -> dict[str, float]:
  """Microseconds per `PaperPLRS.step()`, timed alone over many calls."""
  torch, _, mlp = _torch_modules()
  scheduler = PaperPLRS(torch.optim.SGD(mlp().parameters()), PLRS_MIN, PLRS_MAX)
  seconds = common.time_interleaved({'step': scheduler.step}, rounds=5,
                                    calls_per_round=calls)['step']
  return {'calls_per_round': calls, 'median_us': 1e6 * np.median(seconds),
          'min_us': 1e6 * np.min(seconds)}


def plot(comparisons, path):
  """Images/s of each candidate, one panel per model."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(comparisons), figsize=(6 * len(comparisons),
                                                         4.2), squeeze=False)
  colors = {'default': '#9ecae1', 'tuned': '#3182bd', 'eager': '#e6550d'}
  for ax, comparison in zip(axes[0], comparisons):
    keys = list(comparison['runs'])
    bars = ax.bar(range(len(keys)), [comparison['runs'][k]['images_per_s']
                                     for k in keys],
                  color=[colors[k.split('/')[1]] for k in keys])
    ax.bar_label(bars, fmt='%.0f', fontsize=8)
    ax.set_xticks(range(len(keys)), [k.replace('/', '\n') for k in keys],
                  fontsize=7)
    ax.set_ylabel('images / s (median round)')
    ax.set_title(f"{comparison['model']}, batch {comparison['batch_size']}, "
                 'SGD step')
  fig.suptitle('JAX/XLA vs PyTorch eager on CPU: PLRS and constant rate')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  args = common.parse_args(__doc__.splitlines()[0], lambda parser: (
      parser.add_argument(
          '--xla_flags', default=YNNPACK_OFF,
          help='XLA flags of the "tuned" JAX programs, compared with XLA\'s '
          f'defaults in this process (default: {YNNPACK_OFF!r})')))
  # ResNet-8 has every kind of block ResNet-20 has, and compiles faster.
  resnet, batch_size, rounds = (('resnet8', 8, 2) if args.quick
                                else ('resnet20', 128, 5))
  started = time.perf_counter()
  torch = _torch_modules()[0]
  np.random.seed(None)  # the authors' unseeded global generator
  comparisons = [
      compare(workloads.workload(resnet, batch_size=batch_size),
              parse_xla_flags(args.xla_flags), rounds, calls_per_round=1),
      compare(workloads.workload('mlp', batch_size),
              parse_xla_flags(args.xla_flags), rounds, calls_per_round=20)]
  results = {
      'batch_size': batch_size,
      'rounds': rounds,
      'plrs': {'min_value': PLRS_MIN, 'max_value': PLRS_MAX},
      'constant_rate': CONSTANT_RATE,
      'xla_flags': {'default': '', 'tuned': args.xla_flags},
      'torch_num_threads': torch.get_num_threads(),
      'comparisons': comparisons,
      'pytorch_scheduler_step': scheduler_cost(1000 if args.quick
                                               else 100_000),
      'seconds': time.perf_counter() - started,
  }
  rows = []
  for c in comparisons:
    for key, run in c['runs'].items():
      framework, config, schedule = key.split('/')
      torch_run = c['runs'][f'torch/eager/{schedule}']
      rows.append([c['model'], framework, config, schedule, run['median_ms'],
                   run['images_per_s'],
                   run['images_per_s'] / torch_run['images_per_s']])
  print(common.markdown_table(
      ['model', 'framework', 'config', 'schedule', 'ms/step (median)',
       'images/s', 'JAX / PyTorch images/s'], rows))
  print(f"PyTorch scheduler step: "
        f"{results['pytorch_scheduler_step']['median_us']:.2f} us")
  path = common.write_results('vs_pytorch', results, args.out,
                              quick=args.quick)
  plot(comparisons, args.out / 'vs_pytorch.png')
  print(f'wrote {path} and vs_pytorch.png')


if __name__ == '__main__':
  main()
