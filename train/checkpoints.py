"""A workdir's Orbax checkpoints, for every program of train/: the newest
that restores, one CheckpointManager, and saves that fail in one line."""

from collections.abc import Callable
import gc
import json
import logging
import pathlib
from typing import Any

from etils import epath
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from train import errors
from train import quiet_stderr


def steps(directory: pathlib.Path) -> list[int]:
  """The steps of the checkpoints in `directory`, oldest first."""
  return sorted(int(p.name) for p in directory.glob('*') if p.name.isdigit())


def saved_metrics(step_dir: pathlib.Path) -> dict[str, Any]:
  """The metrics saved with a checkpoint (its epoch's record), or {}."""
  try:
    return json.loads((step_dir / 'metrics' / 'metrics').read_text())
  except (OSError, ValueError):
    return {}


def _damage(step_dir: pathlib.Path) -> str | None:
  """What is wrong with a checkpoint's JSON files (Orbax reads them all when
  it opens the directory), or None."""
  for name in ('_CHECKPOINT_METADATA', 'metrics/metrics'):
    try:
      if (step_dir / name).exists():
        json.loads((step_dir / name).read_text())
    except (OSError, ValueError) as e:
      return f'{name}: {e}'
  return None


def _reason(e: Exception) -> str:
  """Why a checkpoint did not restore, in a few words: TensorStore's errors
  carry a chain of 'context: cause' and a kilobyte of spec."""
  text = str(e).strip().split(' [tensorstore_spec')[0]
  text = text.splitlines()[0] if text else type(e).__name__
  parts = text.split(': ')
  return text if len(parts) <= 2 else f'{parts[0]}: {parts[-1]}'


# target_for(a checkpoint's tree metadata) -> (target, convert): how a program
# reads checkpoints of an older layout into its state.
TargetFor = Callable[[Any], tuple[Any, Callable[[Any], Any]]]


def _restore_one(path: pathlib.Path, target: Any,
                 target_for: TargetFor | None):
  """(restored, None), or (None, why not) with Orbax's noise dropped."""
  checkpointer = ocp.StandardCheckpointer()
  with quiet_stderr.held() as stderr:
    try:
      convert = lambda restored: restored
      if target_for is not None:
        tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(path))
        target, convert = target_for(getattr(tree, 'tree', tree))
      return convert(checkpointer.restore(path, target)), None
    except Exception as e:  # pylint: disable=broad-except
      # Damage is any error of the formats underneath; the failed reads'
      # threads print for a while after it: hold it, mute asyncio's logger.
      gc.collect()
      stderr.wait_for_quiet()
      stderr.drop()
      logging.getLogger('asyncio').setLevel(logging.CRITICAL)
      return None, _reason(e)


def restore_newest(workdir: pathlib.Path, target: Any, *,
                   target_for: TargetFor | None = None,
                   is_main: bool = True) -> tuple[int, Any]:
  """(step, restored) of the newest checkpoint that restores into `target`
  (or `target_for`'s), or (0, None). One that does not is moved, with a
  note, to workdir/damaged_checkpoints/ (so that its step can be saved
  again); when none restores, nothing is moved: WorkdirError."""
  directory = workdir / 'checkpoints'
  failures, step, restored = [], 0, None
  for candidate in reversed(steps(directory)):
    reason = _damage(directory / str(candidate))
    if reason is None and restored is None:
      restored, reason = _restore_one(directory / str(candidate) / 'default',
                                      target, target_for)
      step = candidate if restored is not None else 0
    if reason is not None:
      failures.append((candidate, reason))
  if failures and restored is None:
    bad_step, reason = failures[0]
    raise errors.WorkdirError(
        f'No checkpoint in {directory} restores (the newest, step {bad_step}: '
        f'{reason}). Nothing was changed; move the workdir aside to start '
        'again, or restore the files.')
  for bad_step, reason in failures:
    aside = workdir / 'damaged_checkpoints' / str(bad_step)
    if is_main:
      aside.parent.mkdir(exist_ok=True)
      (directory / str(bad_step)).rename(aside)
    print(f'Skipped checkpoint {bad_step}: it does not restore ({reason}); '
          f'moved it to {aside}.')
  if failures and jax.process_count() > 1:
    multihost_utils.sync_global_devices('plrs_jax: damaged checkpoints')
  return step, restored


def manager(workdir: pathlib.Path, keep: int,
            best: str | None = None) -> ocp.CheckpointManager:
  """The CheckpointManager of workdir/checkpoints: the newest `keep`, and
  the one with the highest metric `best` (mid-epoch ones have none).
    >>> import tempfile
    >>> checkpoints = manager(pathlib.Path(tempfile.mkdtemp()), keep=2)
    >>> save(checkpoints, 1, {'w': jax.numpy.ones(2)})
    >>> checkpoints.all_steps()
    [1]
  """
  policies = [preservation_policy.LatestN(keep)]
  if best:
    policies.append(preservation_policy.BestN(
        get_metric_fn=lambda m: m[best], n=1,
        keep_checkpoints_without_metrics=False))
  return ocp.CheckpointManager(
      workdir / 'checkpoints', options=ocp.CheckpointManagerOptions(
          preservation_policy=preservation_policy.AnyPreservationPolicy(
              policies),
          best_fn=(lambda m: m[best]) if best else None,
          enable_async_checkpointing=False))


def save(checkpoints: ocp.CheckpointManager, step: int, item: Any,
         metrics: dict[str, Any] | None = None) -> None:
  """Saves `item` as checkpoint `step`; a failed write is one WriteFailed."""
  with quiet_stderr.writing(f'checkpoint {step} in {checkpoints.directory}'):
    checkpoints.save(step, args=ocp.args.StandardSave(item), metrics=metrics,
                     force=True)
    checkpoints.wait_until_finished()


def close(checkpoints: ocp.CheckpointManager) -> None:
  with quiet_stderr.writing(f'checkpoints in {checkpoints.directory}'):
    checkpoints.wait_until_finished()
    checkpoints.close()
