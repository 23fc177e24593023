"""JAX/XLA against the paper authors' PyTorch loop on CPU: ResNet-20 and an MLP.

Batch 128 of random data, plain SGD at PLRS [0.07, 0.1] or 0.1: the jitted
`engine.train_step` compiled with XLA's defaults and with `--xla_flags`
(default: YNNPACK fusions off), against PyTorch eager twins of the models
from the same weights, with the authors' host-side scheduler (`PaperPLRS`).
Interleaved rounds, medians; docs/xla_cpu.md says where XLA's time goes.

    python -m benchmarks.vs_pytorch [--quick] [--out DIR] [--xla_flags FLAGS]
"""

import collections
import functools
import time
from typing import Any

import jax
import numpy as np
import optax

import plrs_jax
from benchmarks import common
from benchmarks import workloads
from benchmarks.common import plt

PLRS_MIN, PLRS_MAX = 0.07, 0.1
CONSTANT_RATE = 0.1
YNNPACK_OFF = '--xla_cpu_experimental_ynn_fusion_type='


def parse_xla_flags(flags: str) -> dict[str, Any]:
  """XLA flags as compile options, '--a=1 --b=false' -> {'a': '1', 'b': False}
  (XLA parses a number given as a string, but a bool only as a bool)."""
  options = {}
  for flag in flags.split():
    name, equals, value = flag.lstrip('-').partition('=')
    options[name] = ({'true': True, 'false': False}.get(value.lower(), value)
                     if equals else True)
  return options


class PaperPLRS:
  """PLRS as the authors schedule it: numpy's global RNG, first group only.

  `draw()` is their scheduler's `step()`, called after every optimizer step.
  """

  def __init__(self, optimizer, min_lr: float, max_lr: float):
    self.optimizer, self.min_lr, self.max_lr = optimizer, min_lr, max_lr

  def draw(self) -> float:
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

  def mlp():  # train/models.py's MLP: 784-256-256-10 with ReLU
    return nn.Sequential(collections.OrderedDict(
        flatten=nn.Flatten(), Dense_0=nn.Linear(784, 256), relu_0=nn.ReLU(),
        Dense_1=nn.Linear(256, 256), relu_1=nn.ReLU(),
        classifier=nn.Linear(256, 10)))

  return torch, CifarResNet, mlp


def torch_twin(workload):
  """(model, images, labels): a workload in PyTorch, from its initial
  parameters, the images normalised as the JAX step does it, NCHW."""
  params = jax.device_get(
      workloads.train_state(workload, optax.sgd(0.1)).params)
  torch, resnet, mlp = _torch_modules()
  model = (mlp() if workload.name == 'mlp' else
           resnet(depth=int(workload.name.removeprefix('resnet'))))
  with torch.no_grad():
    for path, module in model.named_modules():
      if not path or not hasattr(module, 'weight'):
        continue
      p = functools.reduce(lambda tree, k: tree[k], path.split('.'), params)
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


def torch_runner(model, images, labels, schedule: str):
  """`one()` takes an eager SGD step, PLRS the authors' way or constant, and
  returns the loss."""
  torch = _torch_modules()[0]
  optimizer = torch.optim.SGD(model.parameters(), lr=CONSTANT_RATE)
  scheduler = (PaperPLRS(optimizer, PLRS_MIN, PLRS_MAX)
               if schedule == 'plrs' else None)

  def one():
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
      scheduler.draw()
    return loss.detach()

  return one


def jax_runner(workload, schedule: str, compiler_options: dict[str, Any]):
  """`one()` takes a compiled SGD step on its own state, returns the loss."""
  rate = (plrs_jax.plrs_schedule(jax.random.key(0), PLRS_MIN, PLRS_MAX)
          if schedule == 'plrs' else optax.constant_schedule(CONSTANT_RATE))
  state = [workloads.train_state(workload, optax.sgd(rate))]
  compiled = jax.jit(workloads.train_fn(workload), donate_argnums=0).lower(
      state[0], workload.batch).compile(compiler_options=compiler_options)

  def one():
    state[0], metrics = compiled(state[0], workload.batch)
    return metrics['loss']

  return one


def compare(workload, tuned: dict[str, Any], rounds: int,
            calls_per_round: int) -> dict[str, Any]:
  """The six candidates of one model, interleaved: timings and ratios."""
  schedules, configs = ('plrs', 'constant'), ('default', 'tuned')
  candidates = {f'jax/{config}/{schedule}': jax_runner(workload, schedule, o)
                for config, o in zip(configs, ({}, tuned))
                for schedule in schedules}
  for schedule in schedules:
    candidates[f'torch/eager/{schedule}'] = torch_runner(
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
            for config in configs for schedule in schedules}
  for run in ('jax/default', 'jax/tuned', 'torch/eager'):
    ratios[f'{run}/plrs_over_constant_time'] = (
        runs[f'{run}/plrs']['median_ms'] / runs[f'{run}/constant']['median_ms'])
  return {'model': workload.name, 'batch_size': batch_size, 'runs': runs,
          'ratios': ratios}


def scheduler_cost(calls: int) -> dict[str, float]:
  """Microseconds per `PaperPLRS.draw()`, timed alone over many calls."""
  torch, _, mlp = _torch_modules()
  scheduler = PaperPLRS(torch.optim.SGD(mlp().parameters()), PLRS_MIN, PLRS_MAX)
  seconds = common.time_interleaved({'draw': scheduler.draw}, rounds=5,
                                    calls_per_round=calls)['draw']
  return {'calls_per_round': calls, 'median_us': 1e6 * np.median(seconds),
          'min_us': 1e6 * np.min(seconds)}


def plot(comparisons):
  """Images/s of each candidate, one panel per model."""
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
  return fig


def main():
  args = common.parse_args(__doc__, xla_flags=dict(
      default=YNNPACK_OFF, help='XLA flags of the "tuned" JAX programs, '
      f"compared with XLA's defaults in this process (default: "
      f'{YNNPACK_OFF!r})'))
  # ResNet-8 has every kind of block ResNet-20 has, and compiles faster.
  resnet, batch_size, rounds = (('resnet8', 8, 2) if args.quick
                                else ('resnet20', 128, 5))
  started = time.perf_counter()
  try:
    torch = _torch_modules()[0]
  except ModuleNotFoundError as e:
    if e.name != 'torch':
      raise
    raise common.UsageError("this benchmark runs PyTorch: pip install -e "
                            "'.[torch]'") from None
  np.random.seed(None)  # the authors' unseeded global generator
  tuned = parse_xla_flags(args.xla_flags)
  try:  # A flag XLA does not know fails here, not after the first runs.
    jax.jit(lambda x: x + 1).lower(1.0).compile(tuned)
  except jax.errors.JaxRuntimeError as e:
    raise common.UsageError(f'--xla_flags={args.xla_flags}: {e}') from None
  comparisons = [
      compare(workloads.workload(resnet, batch_size=batch_size), tuned,
              rounds, calls_per_round=1),
      compare(workloads.workload('mlp', batch_size), tuned, rounds,
              calls_per_round=20)]
  results = {
      'batch_size': batch_size, 'rounds': rounds,
      'plrs': {'min_value': PLRS_MIN, 'max_value': PLRS_MAX},
      'constant_rate': CONSTANT_RATE,
      'xla_flags': {'default': '', 'tuned': args.xla_flags},
      'torch_num_threads': torch.get_num_threads(),
      'comparisons': comparisons,
      'pytorch_scheduler_step': scheduler_cost(1000 if args.quick
                                               else 100_000),
      'seconds': time.perf_counter() - started,
  }
  rows = [[c['model'], *key.split('/'), run['median_ms'], run['images_per_s'],
           run['images_per_s'] / c['runs'][
               f'torch/eager/{key.split("/")[2]}']['images_per_s']]
          for c in comparisons for key, run in c['runs'].items()]
  common.print_table(
      ['model', 'framework', 'config', 'schedule', 'ms/step (median)',
       'images/s', 'JAX / PyTorch images/s'], rows)
  print('PyTorch scheduler step: '
        f"{results['pytorch_scheduler_step']['median_us']:.2f} us")
  common.finish('vs_pytorch', results, plot(comparisons), args)


if __name__ == '__main__':
  common.start(main)
