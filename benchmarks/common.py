"""What every benchmark shares: flags, interleaved timing, tables, results.

Results go to OUT/NAME.json, with how they were measured under
'environment', next to the figure OUT/NAME.png.
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

import jax
import matplotlib
import numpy as np

from train import workdir as workdirs

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / 'benchmarks' / 'results'
PACKAGES = ('jax', 'jaxlib', 'optax', 'flax', 'numpy', 'torch')


def parse_args(doc: str, **flags: dict[str, Any]) -> argparse.Namespace:
  """`--quick`, `--out DIR` and `--NAME` for each of `flags` (NAME: kwargs).

  Without `--out`, a `--quick` run writes to a fresh temporary directory,
  so a smoke run never replaces benchmarks/results/.
  """
  parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
  parser.add_argument('--quick', action='store_true',
                      help='tiny sizes: checks that the benchmark runs')
  parser.add_argument('--out', type=pathlib.Path, default=None,
                      help='directory for the JSON and PNG results (default: '
                      f'{RESULTS}, or a temporary directory with --quick)')
  for name, kwargs in flags.items():
    parser.add_argument(f'--{name}', **kwargs)
  args = parser.parse_args()
  if args.out is None:  # created only when something is written there
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


def command_line() -> str:
  """This run's command as a shell takes it, after JAX_PLATFORMS, XLA_FLAGS."""
  spec = getattr(sys.modules.get('__main__'), '__spec__', None)
  program = (['python', '-m', spec.name] if spec is not None and spec.name
             else ['python', sys.argv[0]])
  env = [f'{name}={shlex.quote(os.environ[name])}'
         for name in ('JAX_PLATFORMS', 'XLA_FLAGS') if name in os.environ]
  return ' '.join(env + [shlex.join(program + sys.argv[1:])])


def environment() -> dict[str, Any]:
  """How a result was measured: command, commit, machine, versions, date."""
  commit, dirty = git_commit()
  return {
      'command': command_line(), 'commit': commit, 'dirty': dirty,
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'machine': {
          'platform': platform.platform(), 'cpu': _cpu_model(),
          'cpu_count': os.cpu_count(), 'jax_backend': jax.default_backend(),
          'jax_devices': [str(d) for d in jax.devices()],
      },
      'versions': workdirs.package_versions(PACKAGES),
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
