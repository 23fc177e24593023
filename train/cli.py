"""What the command-line programs share: quiet logs, errors without tracebacks."""

import sys
from collections.abc import Callable
from typing import Any

from absl import flags
from absl import logging

from train import input_pipeline
from train import train

# Mistakes in a config or a diverging run: shown as one message, not a trace.
USER_ERRORS = (train.TrainingDiverged, input_pipeline.DatasetError, ValueError,
               TypeError)


def quiet_logging() -> None:
  """Keeps the console to progress and results unless --verbosity is given.

  Orbax logs every checkpoint step at INFO.
  """
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def run_or_exit(fn: Callable[..., Any], *args, **kwargs) -> Any:
  """Calls fn; a user error exits with status 1 and its message."""
  try:
    return fn(*args, **kwargs)
  except USER_ERRORS as e:
    sys.exit(f'error: {e}')
