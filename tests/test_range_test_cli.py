"""python -m train.range_test on digits, end to end."""

import json
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np

from plrs_jax import curvature
from train import range_test
import pytest

# End-to-end: subprocesses, training runs, benchmark smoke runs.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_range_test_cli_on_digits(tmp_path):
  out = subprocess.run(
      [sys.executable, '-m', 'train.range_test', f'--workdir={tmp_path}',
       '--num_steps=40', '--power_iterations=30', '--max_lr=20'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((tmp_path / 'range_test.json').read_text())
  assert (tmp_path / 'range_test.png').stat().st_size > 10_000
  rates = np.array(summary['learning_rates'])
  # The rates follow the documented exponential sweep.
  np.testing.assert_allclose(
      rates, 1e-4 * (20 / 1e-4) ** (np.arange(len(rates)) / 39), rtol=1e-9)
  # The suggestion follows the documented rule on the recorded curve:
  # L_max = 0.1 x the rate of the lowest smoothed loss before divergence,
  # L_min = 0.7 x L_max.
  losses = np.array([np.nan if v is None else v for v in summary['losses']])
  end = summary['diverged_step'] or len(losses)
  best_rate = rates[np.nanargmin(losses[:end])]
  np.testing.assert_allclose(summary['suggested_max'], 0.1 * best_rate)
  np.testing.assert_allclose(summary['suggested_min'],
                             0.7 * summary['suggested_max'])
  # beta is the most positive Hessian eigenvalue (the curvature that limits
  # the rate), not |largest-magnitude eigenvalue|; the printed verdict agrees
  # with 1/beta computed here.
  beta = summary['beta']
  assert beta > 0
  assert summary['below_theorem_bound'] == (summary['suggested_max'] < 1 / beta)
  assert summary['below_stability_edge'] == (summary['suggested_max'] < 2 / beta)
  assert f'1/beta = {1 / beta:.4g}' in summary['check'] or (
      f'2/beta = {2 / beta:.4g}' in summary['check'])
  # When the range test and the curvature disagree, the output says which to
  # trust; when they agree, it says so.
  if summary['below_theorem_bound']:
    assert 'agree' in summary['verdict']
  else:
    assert 'disagree. Trust the range test' in summary['verdict']
  assert summary['verdict'] in out.stdout
  assert 'Suggested PLRS bounds: min_value=' in out.stdout


def test_beta_is_the_most_positive_eigenvalue_and_the_verdict_follows():
  # A loss whose Hessian is diag(-30, 5, 1) everywhere: the largest-magnitude
  # eigenvalue is -30, but the rate limit comes from 5 (2/beta = 0.4).
  hessian = jnp.array([-30.0, 5.0, 1.0])
  loss = lambda w: 0.5 * jnp.sum(hessian * w**2)
  beta = curvature.top_hessian_eigenvalue(loss, jnp.ones(3), key=0).eigenvalue
  np.testing.assert_allclose(beta, 5.0, rtol=1e-3)
  agree = range_test.verdict(curvature.check_bounds(0.1, beta), 100)
  disagree = range_test.verdict(curvature.check_bounds(0.3, beta), 100)
  assert agree.startswith('The range test and the curvature agree')
  assert disagree.startswith('The range test and the curvature disagree. '
                             'Trust the range test')


@pytest.mark.parametrize('flags,expected', [
    (['--min_lr=10', '--max_lr=1'], '--max_lr must be greater than --min_lr'),
    (['--min_lr=0'], '--min_lr must be > 0'),
    (['--num_steps=5'], 'num_steps'),
    (['--power_iterations=0'], 'power_iterations'),
    (['stray'], 'unexpected argument(s) stray'),
])
def test_bad_flags_exit_2_in_one_line_and_write_nothing(tmp_path, flags,
                                                        expected):
  workdir = tmp_path / 'run'
  out = subprocess.run(
      [sys.executable, '-m', 'train.range_test', f'--workdir={workdir}',
       *flags], cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert out.returncode == 2, out.stderr[-2000:]
  assert 'Traceback' not in out.stderr
  errors = [line for line in out.stderr.splitlines()
            if line.startswith('error:')]
  assert len(errors) == 1 and expected in errors[0], out.stderr
  assert not workdir.exists()
