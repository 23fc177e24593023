"""Standard error kept to one line around Orbax: its threads' tracebacks held
back while a checkpoint is read or written, and muted for good after a write
fails, with the error said once on the real standard error."""

from collections.abc import Iterator
import contextlib
import errno
import os
import re
import sys
import tempfile
import time
from typing import Any

from train import errors

_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                 errno.EPERM, errno.EFBIG, errno.EIO)
_terminal: Any = None  # The real standard error, once fd 2 is muted.


def write_failure(e: BaseException) -> str | None:
  """What failed, if e (or an error it came from) is a failed write: an
  OSError, or TensorStore's ValueError ending in `[os_error_code='28']`.

  Example:
    >>> write_failure(OSError(errno.ENOSPC, 'No space left on device', '/x'))
    'No space left on device: /x'
    >>> [write_failure(ValueError(f"[os_error_code='{n}']")) for n in (28, 2)]
    ['No space left on device', None]
  """
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
      text = os.strerror(e.errno)
      return f'{text}: {e.filename}' if e.filename else text
    code = re.search(r"\[os_error_code='(\d+)'\]", str(e))
    if code and int(code.group(1)) in _WRITE_ERRNOS:
      return os.strerror(int(code.group(1)))
    e = e.__cause__ or e.__context__
  return None


class HeldStderr:
  """What fd 2 received while `held` runs: shown after it unless dropped."""

  def __init__(self, buffer):
    self.buffer, self.dropped = buffer, False

  def drop(self):
    self.dropped = True

  def wait_for_quiet(self, quiet: float = 0.3, timeout: float = 5.0):
    """Waits for `quiet` s without output (a failed read's threads go on)."""
    deadline, size, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
      now = os.fstat(self.buffer.fileno()).st_size
      if now != size:
        size, since = now, time.monotonic()
      elif time.monotonic() - since >= quiet:
        return
      time.sleep(0.05)


@contextlib.contextmanager
def held(mute_if_dropped: bool = False) -> Iterator[HeldStderr]:
  """Holds back fd 2 (Orbax's threads' tracebacks) while the block runs, then
  shows it unless dropped; dropped, `mute_if_dropped` keeps it muted for good.

  Example:
    >>> with held() as stderr:
    ...   stderr.drop()   # nothing the block printed on fd 2 is shown
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as buffer:
    stderr = HeldStderr(buffer)
    os.dup2(buffer.fileno(), 2)
    try:
      yield stderr
    finally:
      sys.stderr.flush()
      if stderr.dropped and mute_if_dropped:
        mute(saved)
      else:
        os.dup2(saved, 2)
        os.close(saved)
        if not stderr.dropped:
          buffer.seek(0)
          print(buffer.read().decode(errors='replace'), end='',
                file=sys.stderr, flush=True)


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
  """Runs a write; a failed one raises one WriteFailed about `what`, and stderr,
  held meanwhile, stays muted (Orbax's writers print till the process ends)."""
  with held(mute_if_dropped=True) as stderr:
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      if (failure := write_failure(e)) is None:
        raise
      stderr.drop()
  if stderr.dropped:
    raise write_failed(what, failure)


def mute(terminal_fd: int | None = None) -> None:
  """Mutes standard error for the rest of the process, keeping `terminal_fd`
  (by default a copy of fd 2) as the real one for `report`."""
  global _terminal
  sys.stderr.flush()
  terminal_fd = os.dup(2) if terminal_fd is None else terminal_fd
  if _terminal is None:
    _terminal = os.fdopen(terminal_fd, 'w', buffering=1, errors='replace')
  else:
    os.close(terminal_fd)
  devnull = open(os.devnull, 'w', encoding='utf-8')  # pylint: disable=R1732
  os.dup2(devnull.fileno(), 2)
  sys.stderr = devnull


def report(message: str) -> None:
  """Prints `message` on the real standard error, even after a failed write.

  Example:
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...   report('error: nothing written')
    error: nothing written
  """
  print(message, file=_terminal or sys.stderr, flush=True)


def write_failed(what: str | None, failure: str) -> errors.WriteFailed:
  """The WriteFailed that says a write failed, and how to go on.

  Example:
    >>> str(write_failed('run.json', 'No space left on device'))[:47]
    'cannot write run.json: No space left on device.'
  """
  return errors.WriteFailed(
      f'cannot write{f" {what}" if what else ""}: {failure}. Free some space '
      '(or fix the permissions) and run the same command again to resume from '
      'the last checkpoint.')
