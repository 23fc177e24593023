"""Tests of benchmarks/common.py: what every result file records, and how
every benchmark program ends: a mistake or a signal in one line."""

import concurrent.futures
import importlib.machinery
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import types

import jax
import pytest

from benchmarks import common
from train import errors

REPO = pathlib.Path(__file__).resolve().parent.parent


def _git(cwd, *args):
  return subprocess.run(
      ['git', '-c', 'user.name=test', '-c', 'user.email=test@example.com',
       *args], cwd=cwd, check=True, capture_output=True, text=True
  ).stdout.strip()


def test_result_file_holds_the_commit_and_the_command(tmp_path, monkeypatch):
  # As `python -m benchmarks.overhead ...` sets them.
  main = types.ModuleType('__main__')
  main.__spec__ = importlib.machinery.ModuleSpec('benchmarks.overhead', None)
  monkeypatch.setitem(sys.modules, '__main__', main)
  monkeypatch.setattr(sys, 'argv', [
      str(REPO / 'benchmarks' / 'overhead.py'), '--quick', '--out', 'a dir'])
  jax.devices()  # XLA reads XLA_FLAGS when its backend starts, not after
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type= '
                     '--xla_cpu_enable_fast_math=false')
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')

  path = common.write_results('overhead', {'models': {'mlp': 1.0}}, tmp_path,
                              quick=True)

  written = json.loads(path.read_text())
  assert path == tmp_path / 'overhead.json'
  assert written['benchmark'] == 'overhead' and written['quick'] is True
  assert written['models'] == {'mlp': 1.0}
  environment = written['environment']
  assert shlex.split(environment['command']) == [
      'JAX_PLATFORMS=cpu', 'XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= '
      '--xla_cpu_enable_fast_math=false', 'python', '-m', 'benchmarks.overhead',
      '--quick', '--out', 'a dir']
  try:
    head = _git(REPO, 'rev-parse', 'HEAD')
  except (OSError, subprocess.CalledProcessError):  # not a checkout
    head = None
  assert environment['commit'] == head
  assert isinstance(environment['dirty'], bool) or head is None
  for key in ('date', 'machine', 'versions'):
    assert environment[key], key


def test_results_record_the_commit_the_program_started_at(tmp_path,
                                                         monkeypatch):
  # A commit made while a long benchmark runs is not the code it ran.
  monkeypatch.setattr(common, 'git_commit', lambda root=None: ('later', True))
  written = json.loads(common.write_results('x', {}, tmp_path).read_text())
  assert (written['environment']['commit'],
          written['environment']['dirty']) == common.CODE
  assert common.CODE != ('later', True)


def test_results_may_not_hide_the_header():
  with pytest.raises(ValueError, match='environment'):
    common.write_results('x', {'environment': {}}, pathlib.Path('unused'))


@pytest.mark.skipif(shutil.which('git') is None, reason='needs git')
def test_git_commit_is_head_and_dirty_only_for_code(tmp_path):
  assert common.git_commit(tmp_path) == (None, None)
  results = tmp_path / 'benchmarks' / 'results'
  results.mkdir(parents=True)
  (results / 'overhead.json').write_text('{}')
  (tmp_path / 'code.py').write_text('x = 1\n')
  _git(tmp_path, 'init', '-q')
  _git(tmp_path, 'add', '.')
  _git(tmp_path, 'commit', '-qm', 'first')
  head = _git(tmp_path, 'rev-parse', 'HEAD')

  assert common.git_commit(tmp_path) == (head, False)
  (results / 'overhead.json').write_text('{"new": 1}')
  assert common.git_commit(tmp_path) == (head, False)
  (tmp_path / 'code.py').write_text('x = 2\n')
  assert common.git_commit(tmp_path) == (head, True)
  # Only the top of a checkout: a folder inside one is not the benchmarks'.
  assert common.git_commit(tmp_path / 'benchmarks') == (None, None)


def test_parse_args_adds_the_benchmarks_flags(monkeypatch, tmp_path):
  monkeypatch.setattr(sys, 'argv', ['benchmark', '--out', str(tmp_path),
                                    '--devices', '4'])
  args = common.parse_args('A benchmark.\n\nMore.', devices=dict(type=int),
                           xla_flags=dict(default='--a=1'))
  assert (args.out, args.quick, args.devices, args.xla_flags) == (
      tmp_path, False, 4, '--a=1')


def test_print_table_is_markdown_after_its_title(capsys):
  common.print_table(['name', 'ratio'], [['plrs', 1.23456], ['constant', 1]],
                     'Ratios.')
  assert capsys.readouterr().out == (
      '\nRatios.\n\n| name | ratio |\n|---|---|\n| plrs | 1.235 |\n'
      '| constant | 1 |\n')


def test_resume_command_names_the_temporary_directory_it_chose(monkeypatch):
  monkeypatch.setattr(sys, 'argv', ['benchmark', '--quick'])
  args = common.parse_args('A benchmark.')
  assert common.resume_command(args).endswith(
      f'--quick --out {shlex.quote(str(args.out))}')
  monkeypatch.setattr(sys, 'argv', ['benchmark', '--out', '/tmp/o'])
  args = common.parse_args('A benchmark.')
  assert common.resume_command(args).endswith(' --out /tmp/o')


@pytest.mark.parametrize('error, status, line', [
    (common.UsageError('unknown methods'), 2, 'error: unknown methods'),
    (errors.DatasetError('pass --config.data_dir=DIR'), 2,
     'error: pass --data_dir=DIR'),
    (errors.TrainingDiverged('diverged'), 1, 'error: diverged'),
    (KeyboardInterrupt(), 130, 'Stopped by SIGINT: nothing is saved'),
    (common.Stopped(15), 143, 'Stopped by SIGTERM: nothing is saved'),
])
def test_a_benchmark_ends_in_one_line(error, status, line, capsys):
  def main():
    raise error
  with pytest.raises(SystemExit) as stopped:
    common.start(main)
  assert stopped.value.code == status
  assert [l for l in capsys.readouterr().err.splitlines() if l] == [
      line + ('' if line.startswith('error') else
              '; the benchmark runs again from the start.')]


def test_a_bug_keeps_its_trace():
  with pytest.raises(ZeroDivisionError):
    common.start(lambda: 1 / 0)


@pytest.mark.parametrize('argv, line', [
    (['--out', __file__], f'error: --out {__file__} is a file'),
    (['--seeds', '0'], 'error: argument --seeds: must be an integer >= 1, '
                       'got 0 (see --help)'),
    (['--seeds', 'x'], "error: argument --seeds: invalid integer value: 'x'"),
    (['--bogus'], 'error: unrecognized arguments: --bogus (see --help)'),
])
def test_a_bad_command_line_exits_2_in_one_line(argv, line, monkeypatch,
                                                capsys):
  monkeypatch.setattr(sys, 'argv', ['benchmark', *argv])
  with pytest.raises(SystemExit) as stopped:
    common.parse_args('A benchmark.', seeds=dict(type=common.integer(1)))
  assert stopped.value.code == 2
  (printed,) = capsys.readouterr().err.splitlines()
  assert printed.startswith(line)


# (program and flags, what its one line says), as the programs find them:
# each exits 2 before anything trains.
BAD = [
    (['study', '--data_dir=/nonexistent'],
     'Fashion-MNIST cannot be read: none of its four IDX files is in '
     '/nonexistent'),
    (['study', '--methods=nope'], "names unknown methods ['nope']"),
    (['schedulers', '--quick', '--schedules=nope', '--out={out}'],
     "unknown schedules ['nope']"),
    (['schedulers', '--config=/no/config.py'],
     '--config /no/config.py: no such config file.'),
    # Without PyTorch it says how to install it.
    (['vs_pytorch', '--xla_flags=--no_such_flag=1'], ''),
]


@pytest.mark.slow
def test_bad_benchmark_command_lines_exit_2_in_one_line(tmp_path):
  out = tmp_path / 'out'

  def run(case):
    flags = [f.format(out=out) for f in case[0][1:]]
    return subprocess.run(
        [sys.executable, '-m', f'benchmarks.{case[0][0]}', *flags], cwd=REPO,
        capture_output=True, text=True, timeout=300,
        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})

  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    results = list(pool.map(run, BAD))
  for (argv, expected), done in zip(BAD, results):
    where = f'{argv}: {done.stderr[-2000:]}'
    assert done.returncode == 2 and 'Traceback' not in done.stderr, where
    (line,) = done.stderr.splitlines()
    assert line.startswith('error: ') and expected in line, where
  assert not out.exists()
