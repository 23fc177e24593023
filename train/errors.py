"""Errors the user can act on: the command line prints them in a line, exiting
with `EXIT_STATUS`; others are bugs, kept with their trace. No heavy imports."""


class ConfigError(ValueError):
  """A config field has a value the run cannot use."""


class DatasetError(ConfigError):
  """A dataset that cannot be read, with what to do about it."""


class WorkdirError(ValueError):
  """The workdir cannot be used for this run; the message says what to do."""


class TrainingDiverged(RuntimeError):
  """The training loss became non-finite or left any sensible range."""


class WriteFailed(RuntimeError):
  """Writing into the workdir failed (a full disk, a read-only mount...)."""


# 2: a mistake in the command line, config or workdir; 1: the run failed.
EXIT_STATUS = {ConfigError: 2, WorkdirError: 2, TrainingDiverged: 1,
               WriteFailed: 1}


def exit_status(e: BaseException) -> int | None:
  """The exit status for a user-facing error, or None for anything else.

  Example:
    >>> exit_status(ConfigError('config.batch_size=0 ...'))
    2
    >>> exit_status(DatasetError('not prepared')), exit_status(KeyError('x'))
    (2, None)
  """
  return next((v for k, v in EXIT_STATUS.items() if isinstance(e, k)), None)
