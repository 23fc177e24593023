"""What every benchmark shares: flags, interleaved timing, tables, results.

Results go to OUT/NAME.json, with how they were measured under
'environment', next to the figure OUT/NAME.png. Each program runs by
`start`, under the training app's rules: a mistake in its command line or
data exits 2 in one line before anything trains; Ctrl-C or SIGTERM exits
128 + N after one line saying what is saved and the command that resumes.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import matplotlib
import numpy as np

from train import errors
from train import workdir as workdir_lib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results'
PACKAGES = ('jax', 'jaxlib', 'optax', 'flax', 'numpy', 'torch')


class UsageError(ValueError):
  """A mistake in a benchmark's command line, found before it trains."""


def _exit(message: str, status: int):
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(status)


class _Parser(argparse.ArgumentParser):
  """argparse's, with a mistake said in one line."""

  def error(self, message):
    _exit(f'{message} (see --help)', 2)


def integer(minimum: int) -> Callable[[str], int]:
  """A flag's `type`: an integer of at least `minimum`."""
  def parse(text: str) -> int:
    value = int(text)  # argparse reports a ValueError as an invalid value.
    if value < minimum:
      raise argparse.ArgumentTypeError(
          f'must be an integer >= {minimum}, got {value}')
    return value
  parse.__name__ = 'integer'
  return parse


def parse_args(doc: str, **flags: dict[str, Any]) -> argparse.Namespace:
  """`--quick`, `--out DIR` and `--NAME` for each of `flags` (NAME: kwargs).

  Without `--out`, a `--quick` run writes to a fresh temporary directory,
  so a smoke run never replaces benchmarks/results/ (`resume_command` then
  names it).
  """
  parser = _Parser(description=doc.strip().splitlines()[0])
  parser.add_argument('--quick', action='store_true',
                      help='tiny sizes: checks that the benchmark runs')
  parser.add_argument('--out', type=pathlib.Path, default=None,
                      help='directory for the JSON and PNG results (default: '
                      f'{RESULTS}, or a temporary directory with --quick)')
  for name, kwargs in flags.items():
    parser.add_argument(f'--{name}', **kwargs)
  args = parser.parse_args()
  if args.out is not None and args.out.exists() and not args.out.is_dir():
    parser.error(f'--out {args.out} is a file; give a directory (it is '
                 'created if missing)')
  args.out_chosen = args.out is None and args.quick
  if args.out is None:  # created only when something is written there
    args.out = (pathlib.Path(tempfile.gettempdir()) / time.strftime(
        f'plrs_bench_%Y%m%d-%H%M%S_{os.getpid()}') if args.quick else RESULTS)
  return args


def resume_command(args: argparse.Namespace) -> str:
  """The command that resumes this run: this one, with `--out` where
  `parse_args` chose a temporary directory."""
  command = command_line()
  if args.out_chosen:
    command += f' --out {shlex.quote(str(args.out))}'
  return command


class Stopped(KeyboardInterrupt):
  """SIGTERM (or a run that stopped on a signal): stop as Ctrl-C does."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


_signals = []  # Those received, in order.


def _stopped(signum, frame):
  del frame
  _signals.append(signum)
  raise Stopped(signum)


def check_stopped() -> None:
  """Raises Stopped where a signal came and its exception was lost (one
  raised inside a garbage collector's callback is ignored): call it where
  work is saved, e.g. as each epoch ends."""
  if _signals:
    raise Stopped(_signals[0])


# What a stopped benchmark says it kept (`on_stop`).
_saved = [lambda: 'nothing is saved; the benchmark runs again from the start.']


def on_stop(saved: Callable[[], str]) -> None:
  """`saved()` says, once the program is stopped, what is saved and the
  command that resumes (`resume_command`)."""
  _saved[0] = saved


def catch_signals() -> None:
  """SIGTERM and Ctrl-C raise Stopped (see `check_stopped`), also where a
  shell started the program in the background, ignoring Ctrl-C, as the
  training app does."""
  signal.signal(signal.SIGTERM, _stopped)
  signal.signal(signal.SIGINT, _stopped)


def start(main: Callable[[], Any]) -> None:
  """Runs a benchmark's `main()`: a UsageError or a config or dataset error
  exits 2 in a line; Ctrl-C or SIGTERM exits 128 + N in a line (`on_stop`).
  """
  catch_signals()
  try:
    main()
  except KeyboardInterrupt as e:
    signum = getattr(e, 'signum', signal.SIGINT)
    # A line of its own, after a progress bar's.
    print(f'\nStopped by {signal.Signals(signum).name}: {_saved[0]()}',
          file=sys.stderr, flush=True)
    sys.exit(128 + signum)
  except Exception as e:  # pylint: disable=broad-except
    status = 2 if isinstance(e, UsageError) else errors.exit_status(e)
    if status is None:
      raise  # A bug: keep the trace.
    # The app's --config.data_dir is a benchmark's --data_dir.
    _exit(str(e).replace('--config.data_dir=', '--data_dir='), status)


def _cpu_model() -> str:
  try:
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def git_commit(root: pathlib.Path = REPO) -> tuple[str | None, bool | None]:
  """(HEAD, whether the code differs from it) of the checkout topped at root.

  (None, None) outside one; changes under benchmarks/results/ do not count.
  """
  try:
    done = subprocess.run(
        ['git', 'rev-parse', '--show-toplevel', 'HEAD'], cwd=root,
        capture_output=True, text=True, check=True)
    top, commit = done.stdout.split()
    if pathlib.Path(top).resolve() != root.resolve():
      return None, None
    status = subprocess.run(
        ['git', 'status', '--porcelain', '--', '.',
         f':(exclude){RESULTS.relative_to(REPO)}'],
        cwd=root, capture_output=True, text=True, check=True).stdout
  except (OSError, ValueError, subprocess.CalledProcessError):
    return None, None
  return commit, bool(status.strip())


# The code this process runs: its commit and whether the tree differed from it
# when the program started (a long run outlives later commits).
CODE = git_commit()


def command_line() -> str:
  """This run's command as a shell takes it, after JAX_PLATFORMS, XLA_FLAGS."""
  spec = getattr(sys.modules.get('__main__'), '__spec__', None)
  program = (['python', '-m', spec.name] if spec is not None and spec.name
             else ['python', sys.argv[0]])
  env = [f'{name}={shlex.quote(os.environ[name])}'
         for name in ('JAX_PLATFORMS', 'XLA_FLAGS') if name in os.environ]
  return ' '.join(env + [shlex.join(program + sys.argv[1:])])


def environment() -> dict[str, Any]:
  """How a result was measured: command, the commit this process started at
  (`CODE`), machine, versions, date."""
  commit, dirty = CODE
  return {
      'command': command_line(), 'commit': commit, 'dirty': dirty,
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'machine': {
          'platform': platform.platform(), 'cpu': _cpu_model(),
          'cpu_count': os.cpu_count(), 'jax_backend': jax.default_backend(),
          'jax_devices': [str(d) for d in jax.devices()],
      },
      'versions': workdir_lib.package_versions(PACKAGES),
  }


def write_results(name: str, results: dict[str, Any], out: pathlib.Path,
                  quick: bool = False) -> pathlib.Path:
  """Writes OUT/NAME.json, `{'benchmark', 'quick', 'environment',
  **results}` (numpy scalars as floats); returns its path."""
  reserved = {'benchmark', 'quick', 'environment'} & set(results)
  if reserved:
    raise ValueError(f'results must not have the keys {sorted(reserved)}.')
  out.mkdir(parents=True, exist_ok=True)
  path = out / f'{name}.json'
  payload = {'benchmark': name, 'quick': quick, 'environment': environment(),
             **results}
  path.write_text(json.dumps(payload, indent=1, default=float) + '\n')
  return path


def finish(name: str, results: dict[str, Any], figure,
           args: argparse.Namespace) -> pathlib.Path:
  """Writes the results (`write_results`) and the figure to OUT/NAME.png."""
  path = write_results(name, results, args.out, quick=args.quick)
  figure.savefig(path.with_suffix('.png'), dpi=120)
  plt.close(figure)
  print(f'\nwrote {path} and {path.with_suffix(".png")}')
  return path


def time_interleaved(candidates: dict[str, Callable[[], Any]], *, rounds: int,
                     calls_per_round: int = 1) -> dict[str, np.ndarray]:
  """name -> seconds per call of `candidates[name]()`, in each of `rounds`.

  After one untimed warm-up call of each, every round times each candidate
  (`calls_per_round` calls, blocked on) in an order alternating between
  rounds, so a slow spell of the machine affects all alike.
  """
  for fn in candidates.values():
    jax.block_until_ready(fn())
  names = list(candidates)
  times = {name: [] for name in names}
  for r in range(rounds):
    for name in names if r % 2 == 0 else names[::-1]:
      start = time.perf_counter()
      for _ in range(calls_per_round):
        out = candidates[name]()
      jax.block_until_ready(out)
      times[name].append((time.perf_counter() - start) / calls_per_round)
  return {name: np.asarray(t) for name, t in times.items()}


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                title: str = '') -> None:
  """Prints a GitHub Markdown table (floats to 4 digits) after a blank line
  and `title`."""
  cell = lambda v: f'{v:.4g}' if isinstance(v, float) else str(v)
  lines = ['| ' + ' | '.join(headers) + ' |',
           '|' + '|'.join('---' for _ in headers) + '|']
  lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in rows]
  print('\n' + (f'{title}\n\n' if title else '') + '\n'.join(lines),
        flush=True)
