"""benchmarks/study.py: its statistics against hand formulas, each cell's
reproduce command against the config it ran, and --quick end to end."""

import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
import pytest
from scipy import stats

from benchmarks import study
from train import optimizers
from train.configs import fashion_mnist

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_holm_steps_down_as_the_textbook_example():
  # Holm (1979)-style example: thresholds 0.05/4, 0.05/3, 0.05/2, 0.05/1.
  p = {'a': 0.010, 'b': 0.015, 'c': 0.030, 'd': 0.040}
  assert study.holm(p) == {'a': True, 'b': True, 'c': False, 'd': False}
  # Once one is kept, every larger p is kept too, even under alpha.
  assert study.holm({'a': 0.03, 'b': 0.04}) == {'a': False, 'b': False}


def test_paired_differences_are_the_t_interval_of_the_seed_differences():
  rng = np.random.default_rng(0)
  base = rng.uniform(0.8, 0.9, 5)
  results = {'plrs': {'test_accuracy': base.tolist()},
             'other': {'test_accuracy': (base + rng.normal(0.01, 0.004, 5)
                                         ).tolist()},
             'same': {'test_accuracy': (base + 0.002).tolist()}}
  out = study.compare(results, 'plrs')
  d = np.asarray(results['other']['test_accuracy']) - base
  half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
  np.testing.assert_allclose(out['other']['ci95'],
                             [d.mean() - half, d.mean() + half], rtol=1e-9)
  t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
  np.testing.assert_allclose(out['other']['p'], 2 * stats.t.sf(abs(t), 4),
                             rtol=1e-9)
  # A constant difference has no spread to test: never called significant.
  assert out['same']['p'] == 1.0 and not out['same']['holm']


def _parse(command: str, seed: int) -> ml_collections.ConfigDict:
  """The config `python -m train` builds from a reproduce command: its flags
  parsed by ml_collections' config_flags, as the app's are."""
  args = shlex.split(command.format(seed=seed))
  assert args[:3] == ['python', '-m', 'train']
  argv = ['train', *args[3:]]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
      'config', None, 'the config file', flag_values=flag_values,
      lock_config=False, accept_new_attributes=True, sys_argv=argv)
  flags.DEFINE_string('workdir', None, 'the run\'s directory',
                      flag_values=flag_values)
  flag_values(argv)
  assert args[3].split('=', 1)[1].split(':')[0] == study.CONFIG_FILE
  return flag_values.config


@pytest.mark.parametrize('method', [m for m in study.METHODS
                                    if m in fashion_mnist.RATE_FIELDS])
def test_reproduce_is_the_config_the_study_ran_at_its_rate(method):
  tier, epochs, value = study.TIERS['mlp'], 3, 0.137
  ran = study.config_for(tier, method, epochs, study.rate_fields(method, 1.0))
  again = _parse(study.reproduce(tier, method, epochs,
                                 study.rate_fields(method, value)), seed=4)
  assert again.seed == 4 and again.num_epochs == epochs
  ran.seed = 4
  assert {k: v for k, v in again.to_dict().items() if k != 'schedule'} == {
      k: v for k, v in ran.to_dict().items() if k != 'schedule'}
  # The study scales the unit schedule by the value; the command sets the
  # value: the same rates but for float32 rounding, a few ulps of each rate,
  # and where a decay cancels (peak * (1 - f), f near 1) a few ulps of the
  # peak.
  steps = jnp.arange(epochs * 390)
  key = jax.random.key(4)
  unit = optimizers.create_schedule(ran.schedule, key=key,
                                    steps_per_epoch=390,
                                    num_steps=steps.size)
  direct = optimizers.create_schedule(again.schedule, key=key,
                                      steps_per_epoch=390,
                                      num_steps=steps.size)
  np.testing.assert_allclose(
      jax.jit(jax.vmap(direct))(steps),
      value * jax.jit(jax.vmap(unit))(steps), rtol=1e-6,
      atol=4 * np.finfo(np.float32).eps * value)


# The quick form's methods: one of each kind (range-tested, tuned, an optax
# optimizer, learnt).
QUICK_METHODS = 'plrs_range_test,plrs,schedule_free_sgd,mlr_snet'


@pytest.mark.slow
def test_quick_study_stopped_resumes_and_writes_every_cell(tmp_path):
  before = sorted((REPO / 'benchmarks' / 'results').iterdir())
  command = [sys.executable, '-m', 'benchmarks.study', '--quick',
             f'--methods={QUICK_METHODS}', f'--out={tmp_path}']
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  # Ctrl-C once 3 cells are saved: one line says so and how to resume. It
  # starts as a shell's background job does, ignoring SIGINT.
  first = subprocess.Popen(
      ['bash', '-c', 'trap "" INT; exec "$@"', 'bash', *command], cwd=REPO,
      env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  partial = tmp_path / f'{study.NAME}.partial.json'
  deadline = time.monotonic() + 300
  while not (partial.exists()
             and len(json.loads(partial.read_text())['cells']) >= 3):
    assert first.poll() is None and time.monotonic() < deadline
    time.sleep(0.1)
  first.send_signal(signal.SIGINT)
  _, err = first.communicate(timeout=120)
  assert first.returncode == 130 and 'Traceback' not in err, err[-3000:]
  (line,) = [line for line in err.splitlines() if 'Stopped' in line]
  saved = len(json.loads(partial.read_text())['cells'])
  assert line.startswith(f'Stopped by SIGINT: {saved} cells are saved in '
                         f'{partial}; `')
  assert line.endswith(' '.join(command[1:]) + '` resumes from them.')

  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'Resuming: {saved} cells done' in done.stdout
  assert sorted((REPO / 'benchmarks' / 'results').iterdir()) == before
  saved = json.loads((tmp_path / f'{study.NAME}_quick.json').read_text())
  assert (tmp_path / f'{study.NAME}_quick.png').stat().st_size > 10_000
  assert not (tmp_path / f'{study.NAME}.partial.json').exists()
  settings = saved['settings']
  assert settings['splits']['validation'] == 300
  assert set(saved['budgets']) == {'1', '2'}
  for cells in saved['budgets'].values():
    assert list(cells) == QUICK_METHODS.split(',')
    for method, cell in cells.items():
      assert len(cell['test_accuracy']) == len(settings['test_seeds'])
      assert all(0 <= a <= 1 for a in cell['test_accuracy'])
      assert '--config.seed={seed}' in cell['reproduce']
      if method in fashion_mnist.RATE_FIELDS:
        means = [np.mean(p['validation_accuracy']) for p in cell['grid']]
        values = [p['value'] for p in cell['grid']]
        assert cell['chosen'] == values[int(np.argmax(means))]
        assert values == sorted(values) and len(values) >= 3
        # Best at an edge only once the extensions are spent.
        if cell['chosen'] in (values[0], values[-1]):
          assert len(values) == 3 + study.MAX_EXTENSIONS
      else:
        assert 'grid' not in cell and 'bounds' in cell
    bounds = cells['plrs_range_test']['bounds']
    assert bounds == [settings['range_test']['suggested_min'],
                      settings['range_test']['suggested_max']]
    assert 'on_plrs_curve' in cells['plrs_range_test']
  plateau = saved['plateau_check']
  assert plateau['epochs'] == 4 and 'validation_accuracy_change' in plateau
  assert 'Plateau check' in done.stdout and '| method |' in done.stdout
