"""What the command-line programs share: flags, quiet logs, one-line errors.

Exit statuses: 0 done, 1 the run failed (it diverged, or a file could not be
written), 2 a mistake in the command line, the config or the workdir (nothing
was written), 128 + N stopped by signal N after saving a checkpoint (130 for
Ctrl-C, 143 for SIGTERM). This module imports nothing heavy: a bad config is
reported before JAX loads.
"""

import sys
from collections.abc import Callable
from typing import Any

from absl import flags
from absl import logging

from train import errors
from train import workdir


def quiet_logging() -> None:
  """Keeps the console to progress and results unless --verbosity is given.

  Orbax logs every checkpoint step at INFO.
  """
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def run_or_exit(fn: Callable[..., Any], *args, **kwargs) -> Any:
  """Calls fn; user errors and failed writes exit with one line, no trace."""
  try:
    return fn(*args, **kwargs)
  except OSError as e:
    # Writes outside a checkpoint (metrics, run.json, the figure).
    failure = workdir.write_failure(e)
    if failure is None:
      raise  # Not a failed write: keep the traceback.
    _exit(str(workdir.write_failed(None, failure)), 1)
  except Exception as e:  # pylint: disable=broad-except
    status = errors.exit_status(e)
    if status is None:
      raise  # A bug: keep the traceback.
    _exit(str(e), status)


def _exit(message: str, status: int):
  workdir.report(f'error: {message}')
  # The one line is all: Orbax's threads may still print while the process
  # ends (after a checkpoint that failed to read or write).
  workdir.mute_stderr()
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag or a stray argument reported in one
  line (exit 2)."""
  try:
    remaining = flags.FLAGS(argv)
  except OSError as e:
    # An override applied to a config file that failed to load.
    _config_load_failed(e)
  except flags.Error as e:
    # A config file that raises is reported with its traceback inside the
    # message: keep the flag and the exception's own line.
    lines = [line for line in str(e).splitlines() if line.strip()]
    message = lines[0] if len(lines) == 1 else (
        f'{lines[0].rstrip(":")} {lines[-1].strip()}')
    _exit(f'{message}\nSee --helpfull for the flags.', 2)
  if len(remaining) > 1:
    _exit(f'unexpected argument(s) {" ".join(remaining[1:])}: every setting '
          'is a flag (--workdir=DIR, --config.FIELD=VALUE); see --helpfull.',
          2)
  return remaining


def loaded_config(name: str = 'config'):
  """The config flag's value; a config file that fails to load exits 2."""
  config = getattr(flags.FLAGS, name)
  try:
    config.keys()  # A file that failed to load raises on first use.
    return config
  except OSError as e:
    _config_load_failed(e, name)


def _config_load_failed(e: OSError, name: str = 'config'):
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  _exit(f'cannot load the --{name} file: {lines[-1] if lines else e}', 2)
