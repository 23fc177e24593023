"""A run's working directory: run.json (the config and each start), lock (the
host and pid training in it), metrics.jsonl, checkpoints/ and run.png."""

from collections.abc import Iterator, Mapping
import contextlib
import datetime
import importlib.metadata
import json
import os
import pathlib
import socket
import sys
from typing import Any

from train import errors

PACKAGES = ('plrs-jax', 'jax', 'jaxlib', 'optax', 'flax', 'orbax-checkpoint',
            'grain', 'numpy')
WorkdirError = errors.WorkdirError
# Fields a resumed run may change: how it is watched or where it runs.
RESUMABLE_CHANGES = frozenset(
    'log_every_steps progress keep_checkpoints data_dir num_devices distributed'
    ' coordinator_address num_processes process_id cpu_collectives'.split())


def check_path(workdir: str | os.PathLike[str]) -> pathlib.Path:
  """The absolute path (nothing is created); WorkdirError if empty or a file.

  Example:
    >>> check_path('/tmp/run').name
    'run'
  """
  if not str(workdir).strip():
    raise WorkdirError('--workdir is empty; give the directory the run should '
                       'write to, e.g. --workdir=/tmp/plrs_run.')
  path = pathlib.Path(workdir).expanduser().absolute()
  if path.exists() and not path.is_dir():
    raise WorkdirError(f'--workdir={workdir} is a file, not a directory; '
                       'choose a directory (it is created if missing).')
  return path


def _alive(pid: int) -> bool:
  try:
    with contextlib.suppress(PermissionError):  # Another user's: alive.
      os.kill(pid, 0)
    return True
  except ProcessLookupError:
    return False


@contextlib.contextmanager
def lock(workdir: pathlib.Path) -> Iterator[None]:
  """Holds `workdir/lock` (host and pid) while the block runs; WorkdirError if
  a live process holds it. A dead process's lock (this host) is taken over."""
  path = workdir / 'lock'
  me = {'host': socket.gethostname(), 'pid': os.getpid()}
  while True:
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      break
    except FileExistsError:
      try:
        holder = json.loads(path.read_text())
        host, pid = str(holder['host']), int(holder['pid'])
      except (OSError, ValueError, KeyError, TypeError):
        host, pid = me['host'], -1  # Its process died before writing it.
      if host != me['host'] or pid > 0 and _alive(pid):
        raise WorkdirError(
            f'{workdir} is in use by process {pid} on {host} (lock file '
            f'{path}). Wait for that run to finish, or choose another '
            f'--workdir. If that process is gone, delete {path}.') from None
      print(f'Note: taking over {path}, left by process {pid}, which is no '
            'longer running.')
      path.unlink(missing_ok=True)
  with os.fdopen(fd, 'w') as f:
    json.dump(me, f)
  try:
    yield
  finally:
    path.unlink(missing_ok=True)


def flatten(config: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}, with tuples as lists (as JSON has them).

  Example:
    >>> flatten({'model': 'resnet8', 'schedule': {'name': 'plrs', 'b': (1,)}})
    {'model': 'resnet8', 'schedule.name': 'plrs', 'schedule.b': [1]}
  """
  flat = {}
  for key, value in config.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    elif isinstance(value, tuple):
      flat[f'{prefix}{key}'] = list(value)
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def changed_fields(recorded: Mapping[str, Any], current: Mapping[str, Any],
                   defaults: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """{dotted name: (recorded, current)}, None where missing, of the fields that
  change what a run computes (one the record lacks is none at its default).

  Example:
    >>> changed_fields({'seed': 0, 'progress': True, 'b': {'c': 2}},
    ...                {'seed': 1, 'progress': False, 'new': 2}, {'new': 2})
    {'seed': (0, 1), 'b.c': (2, None)}
  """
  old, new, defaults = flatten(recorded), flatten(current), flatten(defaults)

  def changes_the_run(key):
    if old.get(key) == new.get(key):
      return False
    if key.split('.')[0] in RESUMABLE_CHANGES:
      return False
    # A field added since the run started, at its default, changes nothing.
    added_at_default = (key in defaults and key not in old
                        and new.get(key) == defaults[key])
    return not added_at_default

  return {key: (old.get(key), new.get(key)) for key in {**old, **new}
          if changes_the_run(key)}


def refuse_other_run(workdir: pathlib.Path,
                     changed: dict[str, tuple[Any, Any]],
                     notes: Mapping[str, str] | None = None) -> None:
  """Raises WorkdirError where `changed` (`changed_fields`) is not empty."""
  if changed:
    notes = notes or {}
    lines = '\n'.join(f'  {field}: {old!r} -> {new!r}{notes.get(field, "")}'
                      for field, (old, new) in changed.items())
    raise WorkdirError(
        f'{workdir} holds a run started with another config; resuming would '
        f'mix two runs. Changed (recorded -> now):\n{lines}\n'
        'Choose a new --workdir for these settings, or run again with the '
        f'recorded ones (see {workdir / "run.json"}).')


def package_versions(packages=PACKAGES) -> dict[str, str]:
  """{name: version} of the installed ones of `packages`.

  Example:
    >>> list(package_versions(['numpy', 'no-such-package']))
    ['numpy']
  """
  versions = {}
  for package in packages:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
      versions[package] = importlib.metadata.version(package)
  return versions


def read_record(workdir: pathlib.Path) -> dict[str, Any] | None:
  """The workdir's run.json, or None where there is none."""
  path = workdir / 'run.json'
  try:
    return json.loads(path.read_text()) if path.exists() else None
  except ValueError as e:
    raise WorkdirError(
        f'{path} is damaged ({e}), so this workdir\'s config cannot be '
        'checked. Restore the file, or choose another --workdir.') from None


def write_record(workdir: pathlib.Path, config: Mapping[str, Any],
                 previous: dict[str, Any] | None) -> None:
  """Writes run.json: `config`, and the starts of `previous` (the record found
  at start, or None) plus this one's date, command, host and versions."""
  now = datetime.datetime.now(datetime.timezone.utc)
  start = {'date': now.isoformat(timespec='seconds'),
           'command': [sys.executable, *sys.argv],
           'host': socket.gethostname(), 'versions': package_versions()}
  record = {'config': json.loads(json.dumps(dict(config), default=list)),
            'starts': [*(previous or {}).get('starts', []), start]}
  atomic_write_text(workdir / 'run.json', json.dumps(record, indent=2) + '\n')


def atomic_write_text(path: pathlib.Path, text: str) -> None:
  """Writes through a temporary file, so a crash leaves the old or the new."""
  temporary = path.with_name(path.name + '.tmp')
  temporary.write_text(text)
  os.replace(temporary, path)


def read_metrics(path: str | os.PathLike[str],
                 warn: bool = True) -> list[dict[str, Any]]:
  """A metrics.jsonl's records. A partial last line (a killed run's) is dropped
  (with a warning if `warn`); a damaged line elsewhere raises WorkdirError.

  Example:
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'metrics.jsonl'
    >>> _ = path.write_text('{"step": 1, "lr": 0.1}\\n{"step": 2, "l')
    >>> read_metrics(path)
    [{'step': 1, 'lr': 0.1}]
  """
  lines = (path := pathlib.Path(path)).read_text().splitlines()
  records = []
  for number, line in enumerate(lines, 1):
    try:
      records.append(json.loads(line))
    except ValueError as e:
      if number < len(lines):
        raise WorkdirError(
            f'{path}, line {number}, is damaged ({e}). Repair or remove that '
            'line, or choose another --workdir.') from None
      if warn:
        print(f'Warning: dropped the partial last line of {path} (a run was '
              'stopped while writing it).', file=sys.stderr)
  return records


class MetricsLog:
  """workdir/metrics.jsonl, written by host 0. Resumed after `resume_step`
  updates, it drops what a crashed run wrote after its last checkpoint.

  Example:
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'metrics.jsonl'
    >>> MetricsLog(path, 0).write(step=1, lr=0.1)
    >>> MetricsLog(path, 0).write(step=1, lr=0.2)   # a fresh run: rewritten
    >>> MetricsLog(path, 1).write(step=2, lr=0.3)   # resumed after step 1
    >>> [r['lr'] for r in read_metrics(path)]
    [0.2, 0.3]
  """

  def __init__(self, path: pathlib.Path, resume_step: int,
               enabled: bool = True):
    self.path, self.enabled = path, enabled
    if enabled:
      kept = read_metrics(path) if path.exists() and resume_step > 0 else []
      atomic_write_text(path, ''.join(json.dumps(r) + '\n' for r in kept
                                      if r['step'] <= resume_step))

  def write(self, **record):
    if self.enabled:
      with self.path.open('a') as f:
        f.write(json.dumps(record) + '\n')
