"""`python -m train` as a user runs it: bad input, signals, locks, full disks.

Every case runs the real command line in a subprocess and checks its exit
status (0 done, 1 failed run, 2 usage error, 128 + N after signal N), that a
mistake is one line naming the field with no traceback, and what it leaves
in the workdir.
"""

import concurrent.futures
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

import runs

REPO = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# The run the signal test interrupts (runs.small_config): 22 steps an epoch,
# 19 lines of metrics.jsonl in all (16 logged steps, 3 epochs).
SMALL = runs.FLAGS


def _env(devices=1):
  return {**os.environ, 'JAX_PLATFORMS': 'cpu',
          'JAX_NUM_CPU_DEVICES': str(devices), 'PYTHONPATH': str(REPO)}


def _start(workdir, *flags, devices=1):
  return subprocess.Popen(
      [sys.executable, '-m', 'train', f'--workdir={workdir}', *flags],
      cwd=REPO, env=_env(devices), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def _run(workdir, *flags, devices=1, timeout=300):
  process = _start(workdir, *flags, devices=devices)
  out, err = process.communicate(timeout=timeout)
  return process.returncode, out, err


# (flags, what the one-line message must contain). Each must exit 2 before
# writing anything.
BAD = [
    (['--config.batch_size=0'], 'config.batch_size=0 must be an integer >= 1'),
    (['--config.batch_size=-32'], 'config.batch_size=-32'),
    (['--config.batch_size=abc'], '--config.batch_size=abc'),
    # Found after JAX has loaded, from the dataset's size. The other mistakes
    # found then are checked in the process, by
    # test_train.py::test_bad_configs_fail_with_a_clear_message.
    (['--config.batch_size=4096'], 'batch_size 4096 is larger than the 1438'),
    (['--config.eval_batch_size=0'], 'config.eval_batch_size=0'),
    (['--config.num_epochs=0'], 'config.num_epochs=0'),
    (['--config.num_epochs=-3'], 'config.num_epochs=-3'),
    (['--config.log_every_steps=0'], 'config.log_every_steps=0'),
    (['--config.keep_checkpoints=0'], 'config.keep_checkpoints=0'),
    (['--config.momentum=1.0'], 'config.momentum=1.0 must be a number in [0, 1)'),
    (['--config.momentum=-0.1'], 'config.momentum=-0.1'),
    (['--config.weight_decay=-0.0001'], 'config.weight_decay=-0.0001'),
    (['--config.divergence_factor=1'], 'config.divergence_factor=1'),
    (['--config.seed=-1'], 'config.seed=-1'),
    (['--config.model=wrn28_10', '--config.model_kwargs.dropout_rate=1.0'],
     'config.model_kwargs: WideResNet: dropout_rate must be in [0, 1), got '
     '1.0'),
    (['--config.nosuch=1'], 'config.nosuch is not a config field. The fields '
                            'are: augment, '),
    (['--config=train/configs/no_such_config.py'],
     "cannot load the --config file: [Errno 2] No such file or directory: "
     "'train/configs/no_such_config.py'"),
    (['--config=train/configs/default.py:cosine'],
     "unknown schedule 'cosine' for this config; choose one of plrs"),
    # List fields and model_kwargs parse from the command line: these fail
    # on the batch size, after the overrides were taken.
    (['--config=train/configs/default.py:multistep',
      '--config.schedule.boundaries_epochs=[1,2]', '--config.batch_size=0'],
     'config.batch_size=0'),
    (['--config.model=wrn28_10', '--config.model_kwargs.dropout_rate=0.3',
      '--config.batch_size=0'], 'config.batch_size=0'),
    (['--config.optimizer=mlr_snet', '--config.mlr_snet.checkpoint=/no/net'],
     "config.mlr_snet.checkpoint='/no/net' names no file"),
    (['extra_arg'], 'unexpected argument(s) extra_arg: every setting is a '
                    'flag'),
    # The flag replaces the file's explore_steps_epochs=1, then rounds to
    # nothing in 132 steps.
    (['--config=train/configs/default.py:knee',
      '--config.schedule.explore_steps_of_run=0.001'],
     'config.schedule.explore_steps_of_run=0.001 is 0.13 of a step in this '
     'run of 132 steps: give at least 0.00758 (1 step)'),
]


def test_bad_input_exits_2_in_one_line_and_writes_nothing(tmp_path):
  a_file = tmp_path / 'a_file'
  a_file.write_text('not a directory')
  cases = [(f'case{i}', flags, expected)
           for i, (flags, expected) in enumerate(BAD)]
  cases += [('empty', [], '--workdir is empty'),
            ('file', [], f'--workdir={a_file} is a file, not a directory')]

  def run(case):
    name, flags, _ = case
    workdir = {'empty': '', 'file': a_file}.get(name, tmp_path / name)
    return _run(workdir, *flags, devices=4)

  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    results = list(pool.map(run, cases))
  assert len(cases) >= 20
  for (name, flags, expected), (code, out, err) in zip(cases, results):
    where = f'{flags}: {err[-2000:]}'
    assert code == 2, where
    assert 'Traceback' not in err, where
    messages = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(messages) == 1 and expected in messages[0], where
    assert not (tmp_path / name).exists(), where
  assert a_file.read_text() == 'not a directory'


def test_run_from_inside_train_says_where_to_run_it(tmp_path):
  done = subprocess.run(
      [sys.executable, '-m', 'train', f'--workdir={tmp_path / "run"}'],
      cwd=REPO / 'train', env=_env(), capture_output=True, text=True,
      timeout=300, check=False)
  assert done.returncode == 2, done.stderr[-2000:]
  assert done.stderr.splitlines() == [
      f'error: run `python -m train` from the folder that holds train/ '
      f'({REPO}), not from inside train/.']
  assert not (tmp_path / 'run').exists()


def _wait_for(condition, process, what, timeout=240):
  deadline = time.monotonic() + timeout
  while not condition():
    if process.poll() is not None:
      raise AssertionError(f'the run ended ({process.returncode}) before '
                           f'{what}: {process.stderr.read()[-2000:]}')
    if time.monotonic() > deadline:
      raise AssertionError(f'timed out waiting for {what}')
    time.sleep(0.005)


def _lines(path):
  return len(path.read_text().splitlines()) if path.exists() else 0


def test_signals_locks_and_kill_resume_to_the_uninterrupted_run(
    tmp_path, reference_run):
  reference = (reference_run[0] / 'metrics.jsonl').read_text()
  workdir = tmp_path / 'run'
  metrics, lock = workdir / 'metrics.jsonl', workdir / 'lock'

  # Ctrl-C mid-epoch 2 saves and exits 130 (SIGTERM, 143, is checked with
  # two processes in test_train.py). While it trains, a second run on the
  # same workdir is refused.
  first = _start(workdir, *SMALL)
  _wait_for(lock.exists, first, 'the lock')
  code, _, err = _run(workdir, *SMALL)
  assert code == 2 and f'in use by process {first.pid}' in err, err
  _wait_for(lambda: _lines(metrics) >= 5, first, 'step 25')
  first.send_signal(signal.SIGINT)
  out, err = first.communicate(timeout=120)
  assert first.returncode == 130, err
  assert 'Stopped by SIGINT after step' in out and 'Traceback' not in err
  assert not lock.exists()

  # kill -9 mid-epoch 3: no checkpoint, a stale lock, maybe half a line.
  second = _start(workdir, *SMALL)
  _wait_for(lambda: _lines(metrics) >= 14, second, 'step 60')
  second.kill()
  second.communicate(timeout=60)
  assert json.loads(lock.read_text())['pid'] == second.pid

  code, out, err = _run(workdir, *SMALL)
  assert code == 0, err
  assert 'Resuming from the checkpoint at step' in out
  assert f'taking over {lock}, left by process {second.pid}' in out
  assert metrics.read_text() == reference


def test_a_full_disk_is_reported_in_one_line(tmp_path):
  if shutil.which('unshare') is None:
    pytest.skip('needs unshare(1) to mount a small private tmpfs')
  mount = tmp_path / 'small_disk'
  mount.mkdir()
  probe = subprocess.run(
      ['unshare', '-rm', 'sh', '-c', f'mount -t tmpfs -o size=1m tmpfs {mount}'],
      capture_output=True, text=True, check=False)
  if probe.returncode:
    pytest.skip(f'cannot mount a private tmpfs here: {probe.stderr.strip()}')
  # 600 KiB: run.json, metrics and the first checkpoint (~370 KiB) fit, the
  # second checkpoint does not.
  script = (f'mount -t tmpfs -o size=600k tmpfs {mount} && exec '
            f'{sys.executable} -m train --workdir={mount}/run ' + ' '.join(SMALL))
  done = subprocess.run(['unshare', '-rm', 'sh', '-c', script], cwd=REPO,
                        env=_env(), capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 1, done.stderr[-3000:]
  assert 'Traceback' not in done.stderr, done.stderr[-3000:]
  assert 'Event loop is closed' not in done.stderr
  errors = [line for line in done.stderr.splitlines()
            if line.startswith('error:')]
  assert len(errors) == 1, done.stderr[-3000:]
  assert 'No space left on device' in errors[0]
  assert f'{mount}/run' in errors[0]


def _cut_data_files(step_dir):
  """Halves every array file of a checkpoint, leaving its JSON intact (a
  copy that stopped midway)."""
  for f in step_dir.glob('default/**/d/*'):
    f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])


def test_damaged_checkpoints_and_a_lost_last_record_are_one_line_each(
    reference_run, tmp_path):
  ref_dir, _ = reference_run
  cases = {name: tmp_path / name
           for name in ('newest_cut', 'all_cut', 'last_line_cut')}
  for workdir in cases.values():
    shutil.copytree(ref_dir, workdir)
  _cut_data_files(cases['newest_cut'] / 'checkpoints' / '66')
  for step_dir in (cases['all_cut'] / 'checkpoints').iterdir():
    _cut_data_files(step_dir)
  all_cut_before = {p: p.read_bytes() for p in cases['all_cut'].rglob('*')
                    if p.is_file()}
  metrics = cases['last_line_cut'] / 'metrics.jsonl'
  metrics.write_text(metrics.read_text()[:-30])

  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    results = dict(zip(cases, pool.map(lambda w: _run(w, *SMALL),
                                       cases.values())))
  reference = (ref_dir / 'metrics.jsonl').read_text()

  code, out, err = results['newest_cut']
  assert code == 0, err[-2000:]
  assert 'Traceback' not in err and 'Event loop' not in err, err[-2000:]
  (skipped,) = [line for line in out.splitlines() if 'Skipped' in line]
  assert skipped.startswith('Skipped checkpoint 66: it does not restore')
  assert len(skipped) < 300, skipped
  assert (cases['newest_cut'] / 'metrics.jsonl').read_text() == reference

  code, out, err = results['all_cut']
  assert code == 2, err[-2000:]
  assert err.splitlines() == [err.strip()], err[-2000:]
  assert err.startswith('error: No checkpoint in ') and len(err) < 400, err
  assert {p: p.read_bytes() for p in cases['all_cut'].rglob('*')
          if p.is_file()} == all_cut_before

  code, out, err = results['last_line_cut']
  assert code == 0, err[-2000:]
  assert "Restored the last epoch's record" in out
  assert metrics.read_text() == reference
