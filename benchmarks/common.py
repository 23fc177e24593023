"""What every benchmark shares: interleaved timing, tables, result files.

A benchmark compares A and B in the same process, interleaving them round by
round so that drift in the machine's speed hits both alike, and reports
medians and ratios. Results go to benchmarks/results/NAME.json, next to a PNG
figure, in one layout (`write_results`): what was measured, and how to measure
it again: the command, the git commit, the machine, the library versions and
the date.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from train import workdir as workdirs

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results'
PACKAGES = ('jax', 'jaxlib', 'optax', 'flax', 'numpy', 'torch')


def parse_args(description: str,
               extra: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> argparse.Namespace:
  """`--quick` (tiny sizes, for the smoke test) and `--out DIR`.

  A full run writes to benchmarks/results/, the results the README quotes; a
  `--quick` run writes to a fresh temporary directory unless `--out` says
  where, so a smoke run never replaces them.
  """
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument('--quick', action='store_true',
                      help='tiny sizes: checks that the benchmark runs')
  parser.add_argument('--out', type=pathlib.Path, default=None,
                      help='directory for the JSON and PNG results (default: '
                      f'{RESULTS}, or a temporary directory with --quick)')
  if extra is not None:
    extra(parser)
  args = parser.parse_args()
  if args.out is None:
    # Created only when something is written there.
    args.out = (pathlib.Path(tempfile.gettempdir()) / time.strftime(
        f'plrs_bench_%Y%m%d-%H%M%S_{os.getpid()}') if args.quick else RESULTS)
  return args


def _cpu_model() -> str:
  try:
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def git_commit(root: pathlib.Path = REPO) -> tuple[str | None, bool | None]:
  """(HEAD's commit, whether the code differs from it) of the checkout at root.

  (None, None) when root is not the top of a git checkout. Changes under
  benchmarks/results/ do not count: they are what a run writes.
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


def command_line() -> str:
  """This run's command, as a shell would take it again.

  `python -m benchmarks.NAME ARGS`, preceded by the JAX_PLATFORMS and
  XLA_FLAGS it ran with, if set.
  """
  spec = getattr(sys.modules.get('__main__'), '__spec__', None)
  program = (['python', '-m', spec.name] if spec is not None and spec.name
             else ['python', sys.argv[0]])
  env = [f'{name}={shlex.quote(os.environ[name])}'
         for name in ('JAX_PLATFORMS', 'XLA_FLAGS') if name in os.environ]
  return ' '.join(env + [shlex.join(program + sys.argv[1:])])


def environment() -> dict[str, Any]:
  """How a result was measured: command, commit, machine, versions, date."""
  import jax  # pylint: disable=g-import-not-at-top
  commit, dirty = git_commit()
  return {
      'command': command_line(),
      'commit': commit,
      'dirty': dirty,
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'machine': {
          'platform': platform.platform(),
          'cpu': _cpu_model(),
          'cpu_count': os.cpu_count(),
          'jax_backend': jax.default_backend(),
          'jax_devices': [str(d) for d in jax.devices()],
      },
      'versions': workdirs.package_versions(PACKAGES),
  }


def write_results(name: str, results: dict[str, Any], out: pathlib.Path,
                  quick: bool = False) -> pathlib.Path:
  """Writes OUT/NAME.json, the one layout of every result file.

  The file holds `{'benchmark': NAME, 'quick': ..., 'environment':
  environment(), **results}`: the results keep their own top-level keys
  (data, such as one per compared schedule), and everything about how they
  were measured is under 'environment'.

  Args:
    name: the file's name, without '.json'.
    results: JSON-serialisable results (numpy scalars become floats).
    out: the directory, created if need be.
    quick: whether this was a `--quick` smoke run.

  Returns:
    The path written.
  """
  reserved = {'benchmark', 'quick', 'environment'} & set(results)
  if reserved:
    raise ValueError(f'results must not have the keys {sorted(reserved)}.')
  out.mkdir(parents=True, exist_ok=True)
  path = out / f'{name}.json'
  payload = {'benchmark': name, 'quick': quick, 'environment': environment(),
             **results}
  path.write_text(json.dumps(payload, indent=1, default=float) + '\n')
  return path


def time_interleaved(candidates: dict[str, Callable[[], Any]], *, rounds: int,
                     calls_per_round: int = 1) -> dict[str, np.ndarray]:
  """Seconds per call of each candidate, measured in interleaved rounds.

  Every round times each candidate once (`calls_per_round` back-to-back calls,
  each result blocked on), in an order that alternates between rounds, so a
  slow spell of the machine affects all candidates alike.

  Args:
    candidates: name -> a function that runs the work and returns something
      to block on (a jax array or pytree).
    rounds: timed rounds, after one untimed warm-up call of each candidate.
    calls_per_round: calls per timing, to lift very short work above the
      timer's resolution.

  Returns:
    name -> array of `rounds` per-call times in seconds.
  """
  import jax  # pylint: disable=g-import-not-at-top
  for fn in candidates.values():
    jax.block_until_ready(fn())
  names = list(candidates)
  times = {name: [] for name in names}
  for r in range(rounds):
    order = names if r % 2 == 0 else names[::-1]
    for name in order:
      fn = candidates[name]
      start = time.perf_counter()
      for _ in range(calls_per_round):
        out = fn()
      jax.block_until_ready(out)
      times[name].append((time.perf_counter() - start) / calls_per_round)
  return {name: np.asarray(t) for name, t in times.items()}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub Markdown table; floats are printed with 4 significant digits."""

  def cell(value):
    if isinstance(value, float):
      return f'{value:.4g}'
    return str(value)

  lines = ['| ' + ' | '.join(headers) + ' |',
           '|' + '|'.join('---' for _ in headers) + '|']
  lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines)
