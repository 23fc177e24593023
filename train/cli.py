"""Flags, quiet logs and one-line errors for train/'s programs, which exit 0
done, 1 failed, 2 on a bad command line, config or workdir (nothing written),
128 + N on signal N (after a checkpoint). Nothing heavy is imported."""

import pathlib
import sys
from collections.abc import Callable
from typing import Any

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from train import durations
from train import errors
from train import quiet_stderr


def define_flags(config: str, workdir_help: str) -> None:
  """--workdir (required) and --config (default train/configs/`config`), which
  accepts new attributes (config_validation refuses unknown fields)."""
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
  unless --verbosity is given; user errors and failed writes exit in a line."""
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs checkpoints at INFO.
  args = loaded_config(), flags.FLAGS.workdir
  try:
    return fn(*args, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    # An OSError: a write outside a checkpoint (metrics, run.json, figure).
    if isinstance(e, OSError) and (failure := quiet_stderr.write_failure(e)):
      _exit(str(quiet_stderr.write_failed(None, failure)), 1)
    if (status := errors.exit_status(e)) is None:
      raise  # A bug, or an OSError that is no failed write: keep the trace.
    _exit(str(e), status)


def _exit(message: str, status: int):
  quiet_stderr.report(f'error: {message}')
  # Orbax's threads may still print as the process ends: the one line is all.
  quiet_stderr.mute()
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; a bad flag or a stray argument exits 2 in a line."""
  try:
    remaining = flags.FLAGS(argv)
  except OSError as e:  # An override of a config file that failed to load.
    _config_load_failed(e)
  except flags.Error as e:
    # A config file's traceback may be in it: keep its first and last lines.
    lines = [line for line in str(e).splitlines() if line.strip()]
    message = lines[0] if len(lines) == 1 else (
        f'{lines[0].rstrip(":")} {lines[-1].strip()}')
    _exit(f'{message}\nSee --helpfull for the flags.', 2)
  if len(remaining) > 1:
    _exit(f'unexpected argument(s) {" ".join(remaining[1:])}: every setting is '
          'a flag (--workdir=DIR, --config.FIELD=VALUE); see --helpfull.', 2)
  return remaining


def loaded_config(name: str = 'config'):
  """The config flag's value, each duration set by a flag in place of the
  file's in another unit (`durations.prefer_overrides`); a config file that
  fails to load exits 2."""
  config = getattr(flags.FLAGS, name)
  try:
    config.keys()  # A file that failed to load raises on first use.
  except OSError as e:
    _config_load_failed(e, name)
  durations.prefer_overrides(
      config, config_flags.get_override_values(flags.FLAGS[name]))
  return config


def _config_load_failed(e: OSError, name: str = 'config'):
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  _exit(f'cannot load the --{name} file: {lines[-1] if lines else e}', 2)
