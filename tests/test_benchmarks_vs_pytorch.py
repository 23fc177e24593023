"""Smoke test of benchmarks/vs_pytorch.py: it runs and writes its results.

PyTorch is only in the `bench` extra, so without it the test is skipped. No
timing is asserted: the machines are shared (see DESIGN.md, "Measuring").
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

# End-to-end: subprocesses, training runs, benchmark smoke runs.
pytestmark = pytest.mark.slow

pytest.importorskip('torch')

REPO = pathlib.Path(__file__).resolve().parent.parent


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
  assert '| resnet20 |' in done.stdout and '| mlp |' in done.stdout

  results = json.loads((tmp_path / 'vs_pytorch.json').read_text())
  assert (tmp_path / 'vs_pytorch.png').stat().st_size > 0
  assert results['benchmark'] == 'vs_pytorch' and results['quick']
  assert results['batch_size'] == 8 and results['rounds'] == 2
  for key in ('comparisons', 'pytorch_scheduler_step', 'experiments',
              'profile', 'summary', 'threads', 'xla_flags', 'versions'):
    assert key in results, key
  assert results['threads']['torch_num_threads'] >= 1
  assert results['xla_flags']['tuned'] == {
      'xla_cpu_experimental_ynn_fusion_type': ''}

  models = [comparison['model'] for comparison in results['comparisons']]
  assert models == ['resnet20', 'mlp']
  for comparison in results['comparisons']:
    assert set(comparison['runs']) == {
        f'{framework}/{schedule}'
        for framework in ('jax/default', 'jax/tuned', 'torch/eager')
        for schedule in ('plrs', 'constant')}
    for run in comparison['runs'].values():
      assert run['images_per_s'] > 0 and len(run['rounds_ms']) == 2
    for key in ('default/plrs', 'default/constant', 'tuned/plrs',
                'tuned/constant'):
      assert comparison['ratios'][key]['jax_over_torch_images_per_s'] > 0
  assert results['pytorch_scheduler_step']['median_us'] > 0
  names = [experiment['name'] for experiment in results['experiments']]
  assert 'xla default' in names and 'torch default' in names
  assert 'conv layout (one layer)' in names and 'mlp: fusion pass off' in names
  assert results['profile']['default']['hlo']['convolutions'] > 0
