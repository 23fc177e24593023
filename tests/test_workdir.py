"""train/workdir.py: the lock, the run record and metrics.jsonl; and
train/bookkeeping.py's run, which holds them."""

import json
import os
import signal
import socket
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from train import bookkeeping
from train import workdir as workdir_lib


@pytest.fixture
def live_pid():
  process = subprocess.Popen([sys.executable, '-c',
                              'import time; time.sleep(60)'])
  yield process.pid
  process.kill()
  process.wait()


def dead_pid():
  process = subprocess.Popen([sys.executable, '-c', 'pass'])
  process.wait()
  return process.pid


def write_lock(path, host, pid):
  (path / 'lock').write_text(json.dumps({'host': host, 'pid': pid}))


def test_lock_is_held_during_the_block_and_removed_after(tmp_path):
  with workdir_lib.lock(tmp_path):
    holder = json.loads((tmp_path / 'lock').read_text())
    assert holder == {'host': socket.gethostname(), 'pid': os.getpid()}
    with pytest.raises(workdir_lib.WorkdirError,
                       match=f'in use by process {os.getpid()}'):
      with workdir_lib.lock(tmp_path):
        pass
  assert not (tmp_path / 'lock').exists()


def test_lock_of_a_live_process_is_refused_and_left_alone(tmp_path, live_pid):
  write_lock(tmp_path, socket.gethostname(), live_pid)
  before = (tmp_path / 'lock').read_text()
  with pytest.raises(workdir_lib.WorkdirError,
                     match=rf'in use by process {live_pid} on '
                     rf'{socket.gethostname()}.*choose another --workdir'):
    with workdir_lib.lock(tmp_path):
      pass
  assert (tmp_path / 'lock').read_text() == before


def test_lock_of_another_host_is_refused(tmp_path):
  # Whether that process lives cannot be known from here.
  write_lock(tmp_path, 'another-host.example', dead_pid())
  with pytest.raises(workdir_lib.WorkdirError, match='on another-host.example'):
    with workdir_lib.lock(tmp_path):
      pass


@pytest.mark.parametrize('content', ['dead', '{"host": "', ''])
def test_stale_or_garbled_lock_is_taken_over_with_a_note(tmp_path, capsys,
                                                        content):
  pid = dead_pid()
  if content == 'dead':
    write_lock(tmp_path, socket.gethostname(), pid)
  else:
    (tmp_path / 'lock').write_text(content)
  with workdir_lib.lock(tmp_path):
    assert json.loads((tmp_path / 'lock').read_text())['pid'] == os.getpid()
  assert 'taking over' in capsys.readouterr().out
  assert not (tmp_path / 'lock').exists()


def test_damaged_metrics_line_before_the_last_is_an_error(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1}\n{"step": 2, \n{"step": 3}\n')
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r'metrics.jsonl, line 2, is damaged'):
    workdir_lib.read_metrics(path)


def test_record_keeps_every_start(tmp_path):
  workdir_lib.write_record(tmp_path, {'seed': 0, 'schedule': {'b': (1, 2)}},
                           None)
  first = workdir_lib.read_record(tmp_path)
  workdir_lib.write_record(tmp_path, {'seed': 0, 'schedule': {'b': (1, 2)}},
                        first)
  record = workdir_lib.read_record(tmp_path)
  assert record['config'] == {'seed': 0, 'schedule': {'b': [1, 2]}}
  assert len(record['starts']) == 2
  assert record['starts'][0] == first['starts'][0]
  assert {'date', 'command', 'host', 'versions'} <= set(record['starts'][1])
  assert 'jax' in record['starts'][1]['versions']
  (tmp_path / 'run.json').write_text('{"config": ')
  with pytest.raises(workdir_lib.WorkdirError, match='run.json is damaged'):
    workdir_lib.read_record(tmp_path)


def test_check_path_refuses_empty_names_and_files(tmp_path):
  assert workdir_lib.check_path(tmp_path / 'new') == tmp_path / 'new'
  assert not (tmp_path / 'new').exists()
  with pytest.raises(workdir_lib.WorkdirError, match='--workdir is empty'):
    workdir_lib.check_path('')
  (tmp_path / 'f').write_text('x')
  with pytest.raises(workdir_lib.WorkdirError, match='is a file'):
    workdir_lib.check_path(tmp_path / 'f')


def test_a_run_is_closed_when_the_function_that_opened_it_raises(tmp_path):
  """The lock, the checkpoints and the signal handlers of a run opened in a
  `closes_runs` function are released whether it returns or raises."""
  handler = signal.getsignal(signal.SIGINT)

  @bookkeeping.closes_runs
  def train(fail):
    run = bookkeeping.open_run(
        tmp_path, ml_collections.ConfigDict({'seed': 0}),
        lambda: {'w': np.zeros(2, np.float32)},
        check_resume=lambda recorded, done: None, num_steps=2,
        keep_checkpoints=1, stop_signals=True)
    assert (tmp_path / 'lock').exists()
    assert signal.getsignal(signal.SIGINT) != handler
    run.save(run.step + 1, {'w': np.ones(2, np.float32)})
    if fail:
      raise RuntimeError('diverged')
    return run.step

  with pytest.raises(RuntimeError, match='diverged'):
    train(fail=True)
  assert not (tmp_path / 'lock').exists()
  assert signal.getsignal(signal.SIGINT) == handler
  assert train(fail=False) == 1  # Resumed from the failed call's checkpoint.
  assert not (tmp_path / 'lock').exists()
  assert signal.getsignal(signal.SIGINT) == handler
