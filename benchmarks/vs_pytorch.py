"""JAX/XLA against PyTorch eager on CPU: ResNet-20 and an MLP, PLRS or constant.

    python -m benchmarks.vs_pytorch [--quick] [--out DIR] [--xla_flags FLAGS]

The same CIFAR ResNet-20 (train/models.py: 16/32/64 channels, basic blocks,
option-A zero-padded shortcuts, BatchNorm momentum 0.1 in PyTorch's terms,
bias-free convolutions) and the 784-256-256-10 MLP, batch 128 of random data,
trained with plain SGD four ways:

* JAX: one jitted step, `optax.sgd(plrs_jax.plrs_schedule(key, 0.07, 0.1))`,
  the rate drawn inside the compiled program from (key, step);
* JAX with a constant rate of 0.1;
* PyTorch eager, the way the paper's authors do it: `torch.optim.SGD` and a
  scheduler that draws `np.random.uniform(L_min, L_max)` on the host and writes
  it into `param_groups[0]['lr']` after every step (`PaperPLRS`);
* PyTorch eager with a constant rate.

Every JAX step is compiled twice, with XLA's defaults and with the tuned flags
of `--xla_flags`, and all candidates of a model run interleaved, round by
round, in this one process (`common.time_interleaved`; a PyTorch step on the
CPU is synchronous, so the same timer serves it). The tuned flags are given to
XLA per compilation (`Lowered.compile(compiler_options=...)`), which is what
lets the default and the tuned program run side by side; the same string works
as `XLA_FLAGS` for a training run. The PyTorch scheduler's own cost is timed
alone, over many calls.

Where the time goes (`profile`, `experiments` and `cores_busy` in the
result file, measured on the 2-core x86 machine it names): this jaxlib hands
convolutions to YNNPACK by default, and YNNPACK computes the weight gradient
of a 3x3 convolution (which XLA writes as a convolution with a 32x32 window
over batch-transposed activations) with a 3-row micro-kernel: about half of
the default step's annotated thread time, the transposes that feed it
another quarter, and the step keeps only about 1.5 of the 2 cores busy.
`--xla_cpu_experimental_ynn_fusion_type=` (an empty list) turns the YNNPACK
fusions off and sends convolutions back to XLA's Eigen path: 1.6-1.9x
faster, both cores busy; it is the default of `--xla_flags`. It does not
close the gap. PyTorch stays about 1.9x faster, and about as much on one
core, so what is left is per-core speed, not threading: Eigen's im2col
convolutions are 1.3-1.5x slower than oneDNN's direct ones (the one-layer
`conv layout` experiment), and XLA spends about a third of the step
transposing activations to [C, H, W, N] for the weight gradients and in
memory-bound BatchNorm code, where oneDNN reduces over the batch in place.
No flag of this jaxlib reaches that: its oneDNN path takes dots but no
convolutions; disabling XLA's fusion pass (`--xla_disable_hlo_passes=fusion`,
no elementwise chain recomputed inside those transposes) gains about 10% on
ResNet-20 but loses about as much on the MLP, so it is an experiment, not a
default; the other variants move the step by less than the noise; bfloat16
computation (different numerics) gains about 1.3x.

`--quick` (batch 8, 2 rounds, fewer experiments) only checks that the program
runs. Results: benchmarks/results/vs_pytorch.json and vs_pytorch.png.
"""

import argparse
import collections
from collections.abc import Callable
import functools
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks import common

PLRS_MIN, PLRS_MAX = 0.07, 0.1
CONSTANT_RATE = 0.1
# Turns off the YNNPACK fusions that this jaxlib enables by default.
TUNED_XLA_FLAGS = '--xla_cpu_experimental_ynn_fusion_type='
_YNN = 'xla_cpu_experimental_ynn_fusion_type'
_LIB = 'LIBRARY_FUSION_TYPE_'


def _extra_args(parser):
  parser.add_argument(
      '--xla_flags', default=TUNED_XLA_FLAGS,
      help='XLA flags of the tuned JAX runs, "--name=value ..." (default: '
      f'{TUNED_XLA_FLAGS!r}); compared with XLA\'s defaults in this process')
  parser.add_argument('--batch_size', type=int, default=None,
                      help='batch size (default 128; 8 with --quick)')
  parser.add_argument('--rounds', type=int, default=None,
                      help='timed rounds (default 5; 2 with --quick)')
  parser.add_argument('--torch_threads', type=int, default=None,
                      help="PyTorch's intra-op threads (default: its own)")
  parser.add_argument('--skip_experiments', action='store_true',
                      help='only the four-way comparison')
  parser.add_argument('--one_core_child', action='store_true',
                      help=argparse.SUPPRESS)


def parse_xla_flags(flags: str) -> dict[str, Any]:
  """`'--a=1 --b=true --c='` -> `{'a': 1, 'b': True, 'c': ''}` for XLA.

  Args:
    flags: XLA flags as in `XLA_FLAGS`, separated by whitespace.

  Returns:
    The compile options, with 'true'/'false' as bools and integers as ints.
  """
  options = {}
  for flag in flags.split():
    name, equals, value = flag.lstrip('-').partition('=')
    if not equals or value.lower() in ('true', 'false'):
      options[name] = value.lower() != 'false'
    elif re.fullmatch(r'-?\d+', value):
      options[name] = int(value)
    else:
      options[name] = value
  return options


# --- PyTorch ------------------------------------------------------------------


class PaperPLRS:
  """PLRS as the paper's authors schedule it in PyTorch.

  After every optimizer step, a rate is drawn from numpy's global (unseeded)
  generator on the host and written into the first parameter group only, as
  in their code.

  Attributes:
    optimizer: a `torch.optim.Optimizer`.
    min_lr: L_min.
    max_lr: L_max.
  """

  def __init__(self, optimizer, min_lr: float, max_lr: float):
    self.optimizer = optimizer
    self.min_lr = min_lr
    self.max_lr = max_lr

  def step(self) -> float:
    """Draws the next rate and sets it; returns it."""
    lr = np.random.uniform(self.min_lr, self.max_lr)
    self.optimizer.param_groups[0]['lr'] = lr
    return lr


def _torch_models():
  """PyTorch twins of train/models.py's CifarResNet and workloads.MLP."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  def conv3x3(in_features, features, stride):
    conv = nn.Conv2d(in_features, features, 3, stride, 1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode='fan_out', nonlinearity='relu')
    return conv

  class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the option-A shortcut, then ReLU."""

    def __init__(self, in_features, features, stride):
      super().__init__()
      self.conv1 = conv3x3(in_features, features, stride)
      self.bn1 = nn.BatchNorm2d(features)
      self.conv2 = conv3x3(features, features, 1)
      self.bn2 = nn.BatchNorm2d(features)
      self.stride = stride
      self.extra = features - in_features

    def forward(self, x):
      y = F.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      shortcut = x
      if self.stride != 1:
        shortcut = shortcut[:, :, ::self.stride, ::self.stride]
      if self.extra:
        shortcut = F.pad(shortcut, (0, 0, 0, 0, self.extra // 2,
                                    self.extra - self.extra // 2))
      return F.relu(y + shortcut)

  class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet, depth 6n + 2, option-A shortcuts (NCHW)."""

    def __init__(self, depth=20, num_classes=10):
      super().__init__()
      self.stem_conv = conv3x3(3, 16, 1)
      self.stem_bn = nn.BatchNorm2d(16)
      blocks, in_features = [], 16
      for stage, features in enumerate((16, 32, 64)):
        for block in range((depth - 2) // 6):
          stride = 2 if stage > 0 and block == 0 else 1
          blocks.append(BasicBlock(in_features, features, stride))
          in_features = features
      self.blocks = nn.Sequential(*blocks)
      self.classifier = nn.Linear(64, num_classes)

    def forward(self, x):
      x = F.relu(self.stem_bn(self.stem_conv(x)))
      x = self.blocks(x)
      return self.classifier(x.mean(dim=(2, 3)))

  class MLP(nn.Module):
    """784-256-256-10 with ReLU."""

    def __init__(self):
      super().__init__()
      self.layers = nn.Sequential(
          nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256),
          nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
      return self.layers(x)

  return torch, CifarResNet, MLP


def torch_step(model, images, labels, schedule: str) -> Callable[[], None]:
  """One eager SGD step of `model`, PLRS the authors' way or a constant rate."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  optimizer = torch.optim.SGD(model.parameters(), lr=CONSTANT_RATE)
  scheduler = (PaperPLRS(optimizer, PLRS_MIN, PLRS_MAX)
               if schedule == 'plrs' else None)

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
      scheduler.step()

  return step


# --- JAX ----------------------------------------------------------------------


def _cifar_variant(base, **model_kwargs):
  """`base` (workloads.cifar_model('resnet20')) with other model attributes.

  Attributes such as `dtype` change the computation, not the parameters, so
  the variant shares the base's parameters, state and batch.
  """
  from benchmarks import workloads  # pylint: disable=g-import-not-at-top
  from train import models  # pylint: disable=g-import-not-at-top
  model = models.create_model('resnet20', num_classes=10, **model_kwargs)
  loss_fn = workloads.cifar_loss_fn(model)

  name = '-'.join([base.name] + [f'{k}={getattr(v, "__name__", v)}'
                                 for k, v in sorted(model_kwargs.items())])
  return workloads.Workload(name, base.params, base.model_state, base.batch,
                            loss_fn)


def _optimizer(schedule: str):
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import plrs_jax  # pylint: disable=g-import-not-at-top
  if schedule == 'plrs':
    return optax.sgd(plrs_jax.plrs_schedule(jax.random.key(0), PLRS_MIN,
                                            PLRS_MAX))
  return optax.sgd(CONSTANT_RATE)


# Compiled steps by (model, batch shape, schedule, options, donation): the
# experiments reuse the main comparison's programs instead of compiling again.
_COMPILED = {}


def jax_step(workload, schedule: str, compiler_options: dict[str, Any],
             donate: bool = True):
  """A compiled SGD step that carries its own state, like a training loop.

  Args:
    workload: a `workloads.Workload`.
    schedule: 'plrs' or 'constant'.
    compiler_options: XLA options for this compilation ({} = defaults).
    donate: donate params, model state and optimizer state to the step.

  Returns:
    (step, compiled): `step()` runs one step and returns the loss (a jax
    array to block on); `compiled` is the `jax.stages.Compiled`.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks import workloads  # pylint: disable=g-import-not-at-top
  tx = _optimizer(schedule)
  state = jax.tree.map(
      lambda x: x.copy(),
      [workload.params, workload.model_state, tx.init(workload.params)])
  key = (workload.name, workload.batch['image'].shape, schedule,
         tuple(sorted(compiler_options.items())), donate)
  if key not in _COMPILED:
    _COMPILED[key] = jax.jit(
        workloads.sgd_step(workload, tx),
        donate_argnums=(0, 1, 2) if donate else ()).lower(
            *state, workload.batch).compile(compiler_options=compiler_options)
  compiled = _COMPILED[key]

  def step():
    params, model_state, opt_state, loss = compiled(*state, workload.batch)
    state[:] = [params, model_state, opt_state]
    return loss

  return step, compiled


# --- measuring ----------------------------------------------------------------


def _summary(seconds: np.ndarray, batch_size: int) -> dict[str, float]:
  median = float(np.median(seconds))
  return {
      'median_ms': 1e3 * median,
      'min_ms': 1e3 * float(np.min(seconds)),
      'images_per_s': batch_size / median,
      'images_per_s_best_round': batch_size / float(np.min(seconds)),
      'rounds_ms': [1e3 * float(s) for s in seconds],
  }


def compare_model(name: str, jax_workload, torch_model, torch_batch, *,
                  batch_size: int, tuned: dict[str, Any], rounds: int,
                  calls_per_round: int) -> dict[str, Any]:
  """The six candidates of one model, interleaved; summaries and ratios."""
  candidates = {}
  for config, options in (('default', {}), ('tuned', tuned)):
    for schedule in ('plrs', 'constant'):
      candidates[f'jax/{config}/{schedule}'] = jax_step(
          jax_workload, schedule, options)[0]
  for schedule in ('plrs', 'constant'):
    candidates[f'torch/eager/{schedule}'] = torch_step(
        torch_model(), *torch_batch, schedule)
  times = common.time_interleaved(candidates, rounds=rounds,
                                  calls_per_round=calls_per_round)
  runs = {key: _summary(t, batch_size) for key, t in times.items()}
  for key, busy in cores_busy(candidates, calls_per_round).items():
    runs[key]['cores_busy'] = busy
  ratios = {}
  for config in ('default', 'tuned'):
    for schedule in ('plrs', 'constant'):
      jax_run = runs[f'jax/{config}/{schedule}']
      torch_run = runs[f'torch/eager/{schedule}']
      ratios[f'{config}/{schedule}'] = {
          'jax_over_torch_images_per_s':
              jax_run['images_per_s'] / torch_run['images_per_s'],
          'jax_over_torch_best_round':
              jax_run['images_per_s_best_round']
              / torch_run['images_per_s_best_round'],
      }
  for framework, config in (('jax', 'default'), ('jax', 'tuned'),
                            ('torch', 'eager')):
    plrs = runs[f'{framework}/{config}/plrs']['median_ms']
    constant = runs[f'{framework}/{config}/constant']['median_ms']
    ratios[f'{framework}/{config}/plrs_over_constant_time'] = plrs / constant
  return {'model': name, 'runs': runs, 'ratios': ratios}


def cores_busy(candidates: dict[str, Callable[[], Any]],
               calls: int) -> dict[str, float]:
  """CPU seconds of this process per wall second while each candidate runs.

  How many of the machine's cores a step keeps busy (threads that spin while
  waiting count as busy); on a shared machine, what it got rather than what
  it would take.
  """
  import jax  # pylint: disable=g-import-not-at-top
  busy = {}
  for name, fn in candidates.items():
    jax.block_until_ready(fn())
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
      out = fn()
    jax.block_until_ready(out)
    busy[name] = (time.process_time() - cpu) / (time.perf_counter() - wall)
  return busy


def scheduler_cost(calls: int) -> dict[str, float]:
  """Microseconds per `PaperPLRS.step()`, timed alone over many calls."""
  torch, _, mlp = _torch_models()
  optimizer = torch.optim.SGD(mlp().parameters(), lr=CONSTANT_RATE)
  scheduler = PaperPLRS(optimizer, PLRS_MIN, PLRS_MAX)
  per_call = []
  for _ in range(5):
    start = time.perf_counter()
    for _ in range(calls):
      scheduler.step()
    per_call.append((time.perf_counter() - start) / calls)
  return {'calls_per_round': calls,
          'median_us': 1e6 * float(np.median(per_call)),
          'min_us': 1e6 * float(np.min(per_call))}


def _experiment_list(tuned: dict[str, Any], quick: bool):
  """Every variant tried on ResNet-20.

  Args:
    tuned: the tuned XLA options.
    quick: keep only a few.

  Returns:
    (jax_variants, torch_variants): tuples (name, description, XLA options,
    how) and (name, description, how), `how` holding the step's other
    settings (donation, dtype, threads, memory format).
  """
  ynn_off = {_YNN: ''}
  jax_variants = [
      ('xla default', "XLA's defaults (YNNPACK fusions on)", {}, {}),
      ('tuned', f'the tuned flags {tuned}', tuned, {}),
      ('ynn conv only', 'YNNPACK only for convolutions',
       {_YNN: _LIB + 'INDIVIDUAL_CONVOLUTION'}, {}),
      ('ynn all types', 'YNNPACK for convolutions, dots, elementwise and '
       'reductions', {_YNN: ','.join(_LIB + t for t in (
           'INDIVIDUAL_CONVOLUTION', 'INDIVIDUAL_DOT', 'ELTWISE',
           'REDUCE'))}, {}),
      ('onednn fusions', 'oneDNN fusions for dots, elementwise and reductions '
       '(this jaxlib sends no convolution to oneDNN)',
       {'xla_cpu_use_onednn': True,
        'xla_cpu_experimental_onednn_fusion_type': ','.join(
            _LIB + t for t in ('DOT', 'ELTWISE', 'REDUCE'))}, {}),
      ('ynn off + single-threaded eigen', 'ynn off, Eigen ops on one thread '
       '(xla_cpu_multi_thread_eigen=false)',
       {**ynn_off, 'xla_cpu_multi_thread_eigen': False}, {}),
      ('ynn off + fast math', 'ynn off, xla_cpu_enable_fast_math',
       {**ynn_off, 'xla_cpu_enable_fast_math': True}, {}),
      ('ynn off + xnnpack graph fusion', 'ynn off, XNNPACK greedy subgraph '
       'fusion', {**ynn_off, 'xla_cpu_experimental_xnn_graph_fusion_mode':
                  'XNN_GRAPH_FUSION_MODE_GREEDY'}, {}),
      ('legacy runtime', 'xla_cpu_use_thunk_runtime=false (the pre-thunk '
       'runtime, if this jaxlib still has it)',
       {'xla_cpu_use_thunk_runtime': False}, {}),
      ('ynn off + no HLO fusion', 'ynn off, XLA\'s fusion pass disabled '
       '(no elementwise chain recomputed inside the transposes, but every '
       'op a separate pass over memory)',
       {**ynn_off, 'xla_disable_hlo_passes': 'fusion'}, {}),
      ('ynn off, no donation', 'ynn off, without donating the state',
       ynn_off, {'donate': False}),
      ('ynn off, bfloat16', 'ynn off, bfloat16 computation (parameters '
       'float32; different numerics, not the PyTorch float32 baseline)',
       ynn_off, {'dtype': 'bfloat16'}),
  ]
  torch_variants = [
      ('torch default', 'PyTorch eager, its default threads', {}),
      ('torch 1 thread', 'PyTorch eager, torch.set_num_threads(1)',
       {'threads': 1}),
      ('torch channels_last', 'PyTorch eager, channels_last (NHWC) memory '
       'format', {'channels_last': True}),
  ]
  if quick:  # programs the main comparison has compiled already
    jax_variants = jax_variants[:2]
    torch_variants = torch_variants[:2]
  return jax_variants, torch_variants


def run_experiments(workload, tuned: dict[str, Any], rounds: int,
                    quick: bool) -> list[dict[str, Any]]:
  """Every variant tried on the ResNet-20 PLRS step, interleaved together.

  Args:
    workload: the ResNet-20 workload of the main comparison.
    tuned: the tuned XLA options.
    rounds: timed rounds.
    quick: only a few variants.

  Returns:
    One dict per variant: what it is, its options and its timings.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  torch, resnet, _ = _torch_models()
  jax_variants, torch_variants = _experiment_list(tuned, quick)
  batch_size = workload.batch['image'].shape[0]
  images, labels = _torch_batch(torch, workload.batch)
  candidates, described = {}, {}
  for name, what, options, how in jax_variants:
    variant = workload
    if 'dtype' in how:
      variant = _cifar_variant(workload, dtype=getattr(jnp, how['dtype']))
    try:
      candidates[name] = jax_step(variant, 'plrs', options,
                                  donate=how.get('donate', True))[0]
    except Exception as error:  # pylint: disable=broad-except
      # A flag this jaxlib does not know is a result too.
      described[name] = {'name': name, 'framework': 'jax', 'what': what,
                         'xla_options': options, 'error': str(error)[:300]}
      continue
    described[name] = {'name': name, 'framework': 'jax', 'what': what,
                       'xla_options': options, **how}
  default_threads = torch.get_num_threads()
  for name, what, how in torch_variants:
    model = resnet()
    batch = (images, labels)
    if how.get('channels_last'):
      model = model.to(memory_format=torch.channels_last)
      batch = (images.contiguous(memory_format=torch.channels_last), labels)
    step = torch_step(model, *batch, 'plrs')
    threads = how.get('threads')
    if threads:
      step = _with_torch_threads(torch, step, threads, default_threads)
    candidates[name] = step
    described[name] = {'name': name, 'framework': 'torch', 'what': what,
                       'torch_threads': threads or default_threads, **how}
  times = common.time_interleaved(candidates, rounds=rounds)
  reference = {key: float(np.median(times[key]))
               for key in ('xla default', 'torch default') if key in times}
  results = []
  for name, info in described.items():
    if name in times:
      info.update(_summary(times[name], batch_size))
      median = float(np.median(times[name]))
      if 'xla default' in reference:
        info['speedup_over_xla_default'] = reference['xla default'] / median
      if 'torch default' in reference:
        info['images_per_s_over_torch_default'] = (
            reference['torch default'] / median)
    results.append(info)
  results.append(conv_layout_experiment(batch_size, rounds, quick))
  results.append(mlp_fusion_experiment(batch_size, rounds))
  return results


def mlp_fusion_experiment(batch_size: int, rounds: int) -> dict[str, Any]:
  """The MLP step with XLA's fusion pass off, which helps ResNet-20 a little.

  Args:
    batch_size: images per step.
    rounds: timed rounds.

  Returns:
    ms per step (median and best round) of each XLA configuration.
  """
  from benchmarks import workloads  # pylint: disable=g-import-not-at-top
  workload = workloads.mlp(batch_size)
  ynn_off = {_YNN: ''}
  configs = {'xla default': {}, 'ynn off': ynn_off,
             'ynn off + no HLO fusion': {
                 **ynn_off, 'xla_disable_hlo_passes': 'fusion'}}
  times = common.time_interleaved(
      {name: jax_step(workload, 'plrs', options)[0]
       for name, options in configs.items()},
      rounds=2 * rounds, calls_per_round=20)
  return {
      'name': 'mlp: fusion pass off',
      'what': 'the MLP PLRS step with XLA defaults, ynn off, and ynn off with '
              "XLA's fusion pass disabled",
      'xla_options': configs,
      'median_ms': {key: 1e3 * float(np.median(t)) for key, t in times.items()},
      'min_ms': {key: 1e3 * float(np.min(t)) for key, t in times.items()},
  }


def _with_torch_threads(torch, step, threads, default_threads):
  def run():
    torch.set_num_threads(threads)
    try:
      step()
    finally:
      torch.set_num_threads(default_threads)
  return run


def conv_layout_experiment(batch_size: int, rounds: int,
                           quick: bool) -> dict[str, Any]:
  """One stage-1 conv (32x32, 16->16) forward + both gradients, by layout.

  XLA has no layout knob at the model level (Flax convolutions are NHWC), so
  NHWC against NCHW is measured on a single convolution: XLA default and
  ynn off, each in both layouts, and PyTorch in NCHW and channels_last.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax import lax  # pylint: disable=g-import-not-at-top
  torch, _, _ = _torch_models()
  size = 8 if quick else 32
  rng = np.random.default_rng(0)
  nchw = rng.standard_normal((batch_size, 16, size, size), np.float32)
  kernel = rng.standard_normal((3, 3, 16, 16), np.float32)
  candidates = {}
  for layout in ('NHWC', 'NCHW'):
    x = jax.numpy.asarray(nchw if layout == 'NCHW'
                          else nchw.transpose(0, 2, 3, 1))
    k = jax.numpy.asarray(kernel)

    def conv(x, k, layout=layout):
      return lax.conv_general_dilated(
          x, k, (1, 1), ((1, 1), (1, 1)),
          dimension_numbers=(layout, 'HWIO', layout))

    def forward_backward(x, k, conv=conv):
      y, vjp = jax.vjp(conv, x, k)
      return vjp(y)

    for config, options in (('xla default', {}), ('ynn off', {_YNN: ''})):
      compiled = jax.jit(forward_backward).lower(x, k).compile(
          compiler_options=options)
      candidates[f'jax {config} {layout}'] = functools.partial(compiled, x, k)
  tx = torch.from_numpy(nchw.copy()).requires_grad_()
  tk = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).requires_grad_()
  tx_last = tx.detach().contiguous(
      memory_format=torch.channels_last).requires_grad_()

  def torch_forward_backward(x):
    y = torch.nn.functional.conv2d(x, tk, padding=1)
    return torch.autograd.grad(y, (x, tk), y)

  candidates['torch NCHW'] = functools.partial(torch_forward_backward, tx)
  candidates['torch channels_last'] = functools.partial(
      torch_forward_backward, tx_last)
  times = common.time_interleaved(candidates, rounds=rounds,
                                  calls_per_round=3)
  return {
      'name': 'conv layout (one layer)',
      'what': f'forward + input and weight gradients of one 3x3 conv, '
              f'{batch_size}x{size}x{size}x16 -> 16, by framework, XLA '
              'config and layout',
      'median_ms': {key: 1e3 * float(np.median(t)) for key, t in times.items()},
      'min_ms': {key: 1e3 * float(np.min(t)) for key, t in times.items()},
  }


def one_core(batch_size: int, flags: str, rounds: int) -> dict[str, Any]:
  """ResNet-20 PLRS on one core: JAX default and tuned against PyTorch.

  XLA sizes its thread pools from the CPU affinity when its client starts, so
  this runs in a child process pinned to one core before JAX starts. Against
  the two-core numbers it separates per-core speed from threading.
  """
  command = [sys.executable, '-m', 'benchmarks.vs_pytorch', '--one_core_child',
             '--batch_size', str(batch_size), '--rounds', str(rounds),
             f'--xla_flags={flags}']
  done = subprocess.run(command, capture_output=True, text=True, check=False,
                        cwd=os.path.dirname(os.path.dirname(
                            os.path.abspath(__file__))))
  if done.returncode:
    return {'name': 'one core', 'error': done.stderr[-500:]}
  return json.loads(done.stdout.strip().splitlines()[-1])


def _one_core_child(args):
  """The child of `one_core`: pins itself, measures, prints one JSON line."""
  os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  torch, resnet, _ = _torch_models()
  torch.set_num_threads(1)
  from benchmarks import workloads  # pylint: disable=g-import-not-at-top
  workload = workloads.cifar_model('resnet20', batch_size=args.batch_size)
  candidates = {
      'jax default': jax_step(workload, 'plrs', {})[0],
      'jax tuned': jax_step(workload, 'plrs',
                            parse_xla_flags(args.xla_flags))[0],
      'torch 1 thread': torch_step(
          resnet(), *_torch_batch(torch, workload.batch), 'plrs'),
  }
  times = common.time_interleaved(candidates, rounds=args.rounds)
  runs = {key: _summary(t, args.batch_size) for key, t in times.items()}
  torch_rate = runs['torch 1 thread']['images_per_s']
  print(json.dumps({
      'name': 'one core',
      'what': 'ResNet-20 PLRS step in a process pinned to one core (XLA '
              'thread pools sized from the affinity, torch 1 thread)',
      'affinity': sorted(os.sched_getaffinity(0)),
      'runs': runs,
      'jax_over_torch_images_per_s': {
          key: run['images_per_s'] / torch_rate for key, run in runs.items()},
  }))


# --- where the time goes ------------------------------------------------------


def _hlo_index(hlo_text: str):
  """Instruction name -> (its line, the text of the computation it calls)."""
  computations, current = {}, None
  for line in hlo_text.splitlines():
    header = re.match(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$', line)
    if header:
      current = header.group(1)
      computations[current] = []
    elif current is not None and line.startswith('  '):
      computations[current].append(line)
  index = {}
  for lines in computations.values():
    for line in lines:
      match = re.match(r'\s+(?:ROOT )?%?([\w.\-]+) = ', line)
      if match:
        called = re.search(r'calls=%?([\w.\-]+)', line)
        body = (
            '\n'.join(computations.get(called.group(1), [])) if called else '')
        index[match.group(1)] = (line, body or line)
  return index


def _category(line: str, body: str) -> str:
  """What an XLA thunk does, from its HLO."""
  if ' convolution(' in body:
    window = re.search(r'window=\{size=(\d+)', body)
    if window and int(window.group(1)) > 3:
      return 'conv weight gradient'
    return 'conv forward / input gradient'
  if ' dot(' in body:
    return 'dot'
  if ' transpose(' in body or re.search(r'%transpose', line.split('=')[0]):
    return 'transpose (+ fused recomputation)'
  if ' reduce(' in body:
    return 'reduction'
  return 'elementwise / other'


def profile_step(step, compiled, steps: int) -> dict[str, Any]:
  """ms per step of each kind of XLA thunk, from a `jax.profiler` trace.

  Thunks that XLA runs asynchronously on its Eigen pool (its Eigen
  convolutions, i.e. every convolution once YNNPACK is off) show only their
  launch; their time is in the remainder, 'other', with the runtime and idle
  time: XLA's threads times the wall time, less the annotated thunks.

  Args:
    step: a function running one step (compiled with
      xla_cpu_enable_xprof_traceme).
    compiled: its `jax.stages.Compiled`, for the HLO.
    steps: steps traced.

  Returns:
    Wall ms per step and thread-ms per step of each kind of thunk.
  """
  import jax  # pylint: disable=g-import-not-at-top
  index = _hlo_index(compiled.as_text())
  jax.block_until_ready(step())
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory):
      start = time.perf_counter()
      for _ in range(steps):
        out = step()
      jax.block_until_ready(out)
      wall = 1e3 * (time.perf_counter() - start) / steps
    files = glob.glob(os.path.join(directory, '**', '*.xplane.pb'),
                      recursive=True)
    data = jax.profiler.ProfileData.from_file(sorted(files)[-1])
    categories = collections.defaultdict(float)
    for plane in data.planes:
      for line in plane.lines:
        for event in line.events:
          if event.name in index:
            categories[_category(*index[event.name])] += (
                event.duration_ns / 1e6 / steps)
  threads = len(os.sched_getaffinity(0))
  categories = dict(sorted(categories.items(), key=lambda kv: -kv[1]))
  categories['other: async Eigen convolutions, runtime, idle'] = max(
      0.0, threads * wall - sum(categories.values()))
  return {
      'wall_ms_per_step_while_tracing': wall,
      'xla_threads': threads,
      'thread_ms_per_step_by_kind': categories,
  }


def hlo_facts(compiled) -> dict[str, int]:
  """Counts in the optimized HLO: YNNPACK fusions, convolutions, transposes."""
  text = compiled.as_text()
  entry = text[text.find('\nENTRY'):]
  return {
      'ynn_fusions': len(re.findall(r'"kind":"__ynn_fusion"', entry)),
      'onednn_fusions': len(re.findall(r'"kind":"__onednn_fusion"', entry)),
      'convolutions': len(re.findall(r' convolution\(', text)),
      'transpose_fusions_in_entry': len(re.findall(
          r'%transpose[\w.]* = ', entry)),
  }


def profile(workload, tuned: dict[str, Any], steps: int, quick: bool = False):
  """Profiles of the ResNet-20 PLRS step, XLA default and tuned."""
  out = {}
  configs = (('default', {}), ('tuned', tuned))
  for config, options in configs[:1] if quick else configs:
    step, compiled = jax_step(
        workload, 'plrs', {**options, 'xla_cpu_enable_xprof_traceme': True})
    out[config] = {'xla_options': options, 'hlo': hlo_facts(compiled),
                   **profile_step(step, compiled, steps)}
  return out


# --- output -------------------------------------------------------------------


def _torch_batch(torch, batch):
  images = np.array(batch['image'])
  if images.ndim == 4 and images.shape[-1] == 3:
    images = images.transpose(0, 3, 1, 2)
  return (torch.from_numpy(np.ascontiguousarray(images)),
          torch.from_numpy(np.array(batch['label'], dtype=np.int64)))


def _rows(comparisons):
  rows = []
  for comparison in comparisons:
    for key, run in comparison['runs'].items():
      framework, config, schedule = key.split('/')
      if framework == 'jax':
        ratio = comparison['ratios'][f'{config}/{schedule}'][
            'jax_over_torch_images_per_s']
        label = f'jax (XLA {config})'
      else:
        ratio, label = 1.0, 'pytorch eager'
      rows.append([comparison['model'], label, schedule, run['median_ms'],
                   run['min_ms'], run['images_per_s'], ratio])
  return rows


def plot(comparisons, path):
  """Bar chart of images/s per framework, model and schedule."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(comparisons), figsize=(6 * len(comparisons),
                                                         4.2))
  axes = np.atleast_1d(axes)
  colors = {'jax (XLA default)': '#9ecae1', 'jax (XLA tuned)': '#3182bd',
            'pytorch eager': '#e6550d'}
  for ax, comparison in zip(axes, comparisons):
    rows = _rows([comparison])
    short = {'jax (XLA default)': 'JAX\nXLA default', 'jax (XLA tuned)':
             'JAX\nXLA tuned', 'pytorch eager': 'PyTorch\neager'}
    labels = [f'{short[r[1]]}\n{r[2]}' for r in rows]
    values = [r[5] for r in rows]
    bars = ax.bar(range(len(rows)), values,
                  color=[colors[r[1]] for r in rows])
    ax.bar_label(bars, fmt='%.0f', fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel('images / s (median round)')
    ax.set_title(f"{comparison['model']}, batch "
                 f"{comparison['batch_size']}, SGD step")
  fig.suptitle('JAX/XLA vs PyTorch eager on CPU: PLRS and constant rate')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  args = common.parse_args(__doc__.splitlines()[0], _extra_args)
  if args.one_core_child:
    _one_core_child(args)
    return
  quick = args.quick
  batch_size = args.batch_size or (8 if quick else 128)
  rounds = args.rounds or (2 if quick else 5)
  tuned = parse_xla_flags(args.xla_flags)
  started = time.perf_counter()
  load_before = os.getloadavg()

  torch, resnet, mlp = _torch_models()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  torch.manual_seed(0)
  np.random.seed(None)  # the authors' unseeded global generator
  from benchmarks import workloads  # pylint: disable=g-import-not-at-top

  cifar = workloads.cifar_model('resnet20', batch_size=batch_size)
  comparisons = []
  for name, workload, model, calls in (
      ('resnet20', cifar, resnet, 1 if not quick else 2),
      ('mlp', workloads.mlp(batch_size), mlp, 20)):
    batch = _torch_batch(torch, workload.batch)
    comparison = compare_model(
        name, workload, model, batch, batch_size=batch_size, tuned=tuned,
        rounds=rounds, calls_per_round=calls)
    comparison['batch_size'] = batch_size
    comparisons.append(comparison)
    print(f'{name}: done ({time.perf_counter() - started:.0f} s)', flush=True)

  results = {
      'batch_size': batch_size,
      'rounds': rounds,
      'plrs': {'min_value': PLRS_MIN, 'max_value': PLRS_MAX},
      'constant_rate': CONSTANT_RATE,
      'threads': {
          'torch_num_threads': torch.get_num_threads(),
          'torch_num_interop_threads': torch.get_num_interop_threads(),
          'cpu_count': os.cpu_count(),
      },
      'xla_flags': {
          'XLA_FLAGS_environment': os.environ.get('XLA_FLAGS', ''),
          'default': {},
          'tuned': tuned,
          'tuned_as_XLA_FLAGS': args.xla_flags,
      },
      'comparisons': comparisons,
      'pytorch_scheduler_step': scheduler_cost(1000 if quick else 100_000),
  }
  if not args.skip_experiments:
    results['experiments'] = run_experiments(
        cifar, tuned, rounds=2 if quick else 3, quick=quick)
    if not quick:
      results['experiments'].append(
          one_core(batch_size, args.xla_flags, rounds=3))
    print(f'experiments: done ({time.perf_counter() - started:.0f} s)',
          flush=True)
    results['profile'] = profile(cifar, tuned, steps=1 if quick else 3,
                                 quick=quick)
  resnet = comparisons[0]['ratios']
  results['summary'] = {
      'resnet20_jax_over_torch_plrs_default':
          resnet['default/plrs']['jax_over_torch_images_per_s'],
      'resnet20_jax_over_torch_plrs_tuned':
          resnet['tuned/plrs']['jax_over_torch_images_per_s'],
      'goal_met_resnet20_tuned_at_least_torch':
          resnet['tuned/plrs']['jax_over_torch_images_per_s'] >= 1.0,
      'resnet20_torch_faster_than_tuned_jax_by':
          1 / resnet['tuned/plrs']['jax_over_torch_images_per_s'],
      'mlp_jax_over_torch_plrs_tuned':
          comparisons[1]['ratios']['tuned/plrs'][
              'jax_over_torch_images_per_s'],
  }
  results['load_average_before_after'] = [load_before, os.getloadavg()]
  results['seconds'] = time.perf_counter() - started

  table = common.markdown_table(
      ['model', 'framework', 'schedule', 'ms/step (median)', 'ms/step (best)',
       'images/s', 'JAX / PyTorch images/s'], _rows(comparisons))
  print(table)
  print(f"PyTorch scheduler step: "
        f"{results['pytorch_scheduler_step']['median_us']:.2f} us")
  for experiment in results.get('experiments', []):
    if 'images_per_s' in experiment:
      print(f"experiment {experiment['name']!r}: "
            f"{experiment['images_per_s']:.1f} images/s")
  path = common.write_results('vs_pytorch', results, args.out, quick=quick)
  plot(comparisons, args.out / 'vs_pytorch.png')
  print(f'wrote {path} and vs_pytorch.png')


if __name__ == '__main__':
  main()
