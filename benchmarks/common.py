"""What every benchmark shares: interleaved timing, tables, result files.

A benchmark compares A and B in the same process, interleaving them round by
round so that drift in the machine's speed hits both alike, and reports
medians and ratios. Results go to benchmarks/results/NAME.json with the
machine, the library versions and the date, next to a PNG figure.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from train import workdir as workdirs

RESULTS = pathlib.Path(__file__).resolve().parent / 'results'
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


def environment() -> dict[str, Any]:
  """The machine, library versions and date a result was measured with."""
  import jax  # pylint: disable=g-import-not-at-top
  return {
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
  """Writes results plus `environment()` to OUT/NAME.json; returns the path."""
  out.mkdir(parents=True, exist_ok=True)
  path = out / f'{name}.json'
  payload = {'benchmark': name, 'quick': quick, **environment(), **results}
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


def write_keyed_results(name: str, results: dict[str, Any], out: pathlib.Path,
                        quick: bool = False) -> pathlib.Path:
  """Like `write_results`, but the environment goes under one key.

  For results whose top-level keys are data (one per compared variant):
  writes `{**results, 'environment': {'benchmark', 'quick', 'date',
  'machine', 'versions'}}` to OUT/NAME.json and returns the path.
  """
  if 'environment' in results:
    raise ValueError("results must not have a key 'environment'.")
  out.mkdir(parents=True, exist_ok=True)
  path = out / f'{name}.json'
  payload = {**results, 'environment': {
      'benchmark': name, 'quick': quick, **environment()}}
  path.write_text(json.dumps(payload, indent=1, default=float) + '\n')
  return path
