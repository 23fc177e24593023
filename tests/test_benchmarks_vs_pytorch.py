"""Tests of benchmarks/vs_pytorch.py: the two frameworks train the same network.

PyTorch is only in the `bench` extra, so without it the tests are skipped. No
timing is asserted: the machines are shared (see DESIGN.md, "Measuring").
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

# End-to-end: subprocesses, training runs, benchmark smoke runs.
pytestmark = pytest.mark.slow

pytest.importorskip('torch')

REPO = pathlib.Path(__file__).resolve().parent.parent


# ResNet-8 has one block of each kind ResNet-20 has three of.
@pytest.mark.parametrize('model', ['resnet8', 'mlp'])
def test_torch_twin_takes_the_same_sgd_steps_as_jax(model):
  from benchmarks import vs_pytorch  # pylint: disable=g-import-not-at-top
  from benchmarks import workloads  # pylint: disable=g-import-not-at-top
  workload = workloads.workload(model, batch_size=8)
  jax_runner = vs_pytorch.jax_runner(workload, 'constant', {})
  torch_runner = vs_pytorch.torch_runner(*vs_pytorch.torch_twin(workload),
                                         'constant')
  # The first loss checks the forward pass on the same weights, the second
  # the gradients and the update.
  jax_losses = [float(jax_runner()) for _ in range(2)]
  torch_losses = [float(torch_runner()) for _ in range(2)]
  np.testing.assert_allclose(torch_losses, jax_losses, rtol=1e-5)
  assert jax_losses[1] < jax_losses[0]


def test_paper_plrs_draws_every_step_into_the_first_group_only():
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import vs_pytorch  # pylint: disable=g-import-not-at-top
  first, second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
  optimizer = torch.optim.SGD([{'params': first.parameters()},
                               {'params': second.parameters()}], lr=1.0)
  scheduler = vs_pytorch.PaperPLRS(optimizer, 0.07, 0.1)
  rates = [scheduler.draw() for _ in range(20)]
  assert all(0.07 <= rate <= 0.1 for rate in rates)
  assert len(set(rates)) == 20
  assert optimizer.param_groups[0]['lr'] == rates[-1]
  assert optimizer.param_groups[1]['lr'] == 1.0


def test_parse_xla_flags_types_the_values():
  from benchmarks import vs_pytorch  # pylint: disable=g-import-not-at-top
  assert vs_pytorch.parse_xla_flags(
      '--xla_cpu_experimental_ynn_fusion_type= --a=true --b=False --c=-3 '
      '--d=x,y --e') == {'xla_cpu_experimental_ynn_fusion_type': '',
                          'a': True, 'b': False, 'c': '-3', 'd': 'x,y',
                          'e': True}


def test_vs_pytorch_quick_writes_json_and_png(tmp_path):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  # Measure XLA's own defaults, whatever XLA_FLAGS this test run has.
  env.pop('XLA_FLAGS', None)
  done = subprocess.run(
      [sys.executable, '-m', 'benchmarks.vs_pytorch', '--quick', '--out',
       str(tmp_path)],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert '| resnet8 | jax | tuned | plrs |' in done.stdout
  assert '| mlp | torch | eager | plrs |' in done.stdout

  results = json.loads((tmp_path / 'vs_pytorch.json').read_text())
  assert (tmp_path / 'vs_pytorch.png').stat().st_size > 0
  assert results['benchmark'] == 'vs_pytorch' and results['quick']
  assert results['environment']['command'] == (
      f'JAX_PLATFORMS=cpu python -m benchmarks.vs_pytorch --quick --out '
      f'{tmp_path}')
  assert results['batch_size'] == 8 and results['rounds'] == 2
  assert results['xla_flags']['tuned'] == (
      '--xla_cpu_experimental_ynn_fusion_type=')
  assert [c['model'] for c in results['comparisons']] == ['resnet8', 'mlp']
  for comparison in results['comparisons']:
    assert set(comparison['runs']) == {
        f'{run}/{schedule}'
        for run in ('jax/default', 'jax/tuned', 'torch/eager')
        for schedule in ('plrs', 'constant')}
    for run in comparison['runs'].values():
      assert len(run['rounds_ms']) == 2
      assert run['median_ms'] == pytest.approx(np.median(run['rounds_ms']))
    ratio = comparison['ratios']['tuned/plrs']['jax_over_torch_images_per_s']
    assert ratio == pytest.approx(
        comparison['runs']['jax/tuned/plrs']['images_per_s']
        / comparison['runs']['torch/eager/plrs']['images_per_s'])
  assert results['pytorch_scheduler_step']['median_us'] > 0
