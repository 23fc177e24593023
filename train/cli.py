"""What the command-line programs share: flags, quiet logs, one-line errors.

Exits 0 done, 1 the run failed, 2 a mistake in the command line, config or
workdir (nothing written), 128 + N stopped by signal N after a checkpoint.
Nothing heavy is imported: a bad config is reported before JAX loads."""

import pathlib
import sys
from collections.abc import Callable
from typing import Any

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from train import errors
from train import workdir


def define_flags(config: str, workdir_help: str) -> None:
  """--workdir (required) and --config (default train/configs/`config`),
  as every program of train/ takes them. New attributes are accepted for
  `model_kwargs` and a schedule's arguments; config_validation refuses
  unknown fields, naming the valid ones."""
  flags.DEFINE_string('workdir', None, workdir_help)
  config_flags.DEFINE_config_file(
      'config', str(pathlib.Path(__file__).parent / 'configs' / config),
      'Configuration file.', lock_config=False, accept_new_attributes=True)
  flags.mark_flags_as_required(['workdir'])


def start(main: Callable[[], None]) -> None:
  """Runs `main()` as the program: flags parsed by `parse_flags`."""
  app.run(lambda argv: main(), flags_parser=parse_flags)


def run(fn: Callable[..., Any], **kwargs) -> Any:
  """`fn(config, workdir, **kwargs)` of the command line, logging at WARNING
  (Orbax logs every checkpoint at INFO) unless --verbosity is given; user
  errors exit in one line (`run_or_exit`)."""
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  return run_or_exit(fn, loaded_config(), flags.FLAGS.workdir, **kwargs)


def run_or_exit(fn: Callable[..., Any], *args, **kwargs) -> Any:
  """Calls fn; user errors and failed writes exit with one line, no trace."""
  try:
    return fn(*args, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    # An OSError: a write outside a checkpoint (metrics, run.json, figure).
    failure = workdir.write_failure(e) if isinstance(e, OSError) else None
    if failure is not None:
      _exit(str(workdir.write_failed(None, failure)), 1)
    if (status := errors.exit_status(e)) is None:
      raise  # A bug, or an OSError that is no failed write: keep the trace.
    _exit(str(e), status)


def _exit(message: str, status: int):
  workdir.report(f'error: {message}')
  # The one line is all: Orbax's threads may still print while the process
  # ends (after a checkpoint that failed to read or write).
  workdir.mute_stderr()
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; a bad flag or a stray argument exits 2 in a line."""
  try:
    remaining = flags.FLAGS(argv)
  except OSError as e:  # An override of a config file that failed to load.
    _config_load_failed(e)
  except flags.Error as e:
    # A config file that raises puts its traceback in the message: keep the
    # flag's line and the exception's own.
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
  except OSError as e:
    _config_load_failed(e, name)
  return config


def _config_load_failed(e: OSError, name: str = 'config'):
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  _exit(f'cannot load the --{name} file: {lines[-1] if lines else e}', 2)
