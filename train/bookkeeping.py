"""A run's bookkeeping in its workdir, for every program of train/ that trains:
the lock, run.json and the same-run check, the newest checkpoint restored (or
the fresh state), the checkpoint manager, metrics.jsonl and the stop signals,
opened in one call and closed together.

A program opens its run once and keeps its loop at its top level:

    @bookkeeping.closes_runs
    def train(config, workdir):
      run = bookkeeping.open_run(workdir, config, create_state, ...)
      for step in range(run.step + 1, num_steps + 1):
        ...
        run.save(step, state)
"""

from collections.abc import Callable
import contextlib
import contextvars
import functools
import os
import pathlib
import signal
import threading
from typing import Any, Self

import jax
from jax.experimental import multihost_utils
import ml_collections

from train import checkpoints
from train import workdir as workdir_lib

# check_resume(the recorded config ({} without run.json), the steps its newest
# checkpoint took) raises WorkdirError where the config cannot resume it.
ResumeCheck = Callable[[dict[str, Any], int], None]

# Where `open_run` leaves what closes a run: the decorated call's ExitStack.
_closing: contextvars.ContextVar[contextlib.ExitStack | None] = (
    contextvars.ContextVar('closing', default=None))


def closes_runs(function: Callable[..., Any]) -> Callable[..., Any]:
  """`function`, closing every run it opens when it returns or raises, so
  that its loop needs no `with` around it."""

  @functools.wraps(function)
  def wrapper(*args, **kwargs):
    with contextlib.ExitStack() as stack:
      token = _closing.set(stack)
      try:
        return function(*args, **kwargs)
      finally:
        _closing.reset(token)

  return wrapper


def refusing_changes(workdir: pathlib.Path, config: ml_collections.ConfigDict,
                     defaults: ml_collections.ConfigDict) -> ResumeCheck:
  """The ResumeCheck that refuses any change of a field that changes what the
  run computes (`workdir.changed_fields`; `defaults`: the config's)."""

  def check_resume(recorded: dict[str, Any], done_steps: int) -> None:
    del done_steps
    workdir_lib.refuse_other_run(workdir, workdir_lib.changed_fields(
        recorded, config.to_dict(), defaults.to_dict()))

  return check_resume


class StopSignals:
  """SIGINT and SIGTERM: checkpoint and return after the step (a second one
  acts at once). With several processes JAX's preemption service brings
  every process to the same sync point (Ctrl-C is forwarded as SIGTERM)."""

  def __init__(self, multi_process: bool = False):
    self.signum, self._previous, self._multi_process = 0, {}, multi_process

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      signums = ((signal.SIGINT,) if self._multi_process else
                 (signal.SIGINT, signal.SIGTERM))
      for signum in signums:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _handle(self, signum, frame):
    del frame
    if self.signum == signum:
      signal.signal(signum, self._previous[signum])
      signal.raise_signal(signum)
    self.signum = self.signum or signum
    if self._multi_process:
      os.kill(os.getpid(), signal.SIGTERM)  # A notice to every process.

  def signal_after(self, step: int) -> int:
    """The signal to stop for after `step` (0: go on); call it every step."""
    if not self._multi_process:
      return self.signum
    synced = multihost_utils.reached_preemption_sync_point(step)
    return (self.signum or signal.SIGTERM) if synced else 0


class Run:
  """An open run: `step`, the steps done (0 for a fresh run); `state`, the
  newest checkpoint's or the fresh one; `finished`, whether `step` reached
  the run's length (then nothing is opened for writing: `log` is None)."""

  def __init__(self, workdir: pathlib.Path, step: int, state: Any,
               stack: contextlib.ExitStack, finished: bool,
               log: workdir_lib.MetricsLog | None = None,
               manager: Any = None, stop: StopSignals | None = None):
    self.workdir, self.step, self.state = workdir, step, state
    self.finished, self.log = finished, log
    self._stack, self._manager, self._stop = stack, manager, stop

  def save(self, step: int, item: Any,
           metrics: dict[str, Any] | None = None) -> None:
    """Saves `item` as checkpoint `step`, with `metrics` (its epoch's)."""
    checkpoints.save(self._manager, step, item, metrics=metrics)

  def latest_checkpoint(self) -> int | None:
    return self._manager.latest_step()

  def signal_after(self, step: int) -> int:
    """The stop signal received by `step` (0: go on); see `StopSignals`."""
    return self._stop.signal_after(step) if self._stop else 0

  def enter_context(self, context: Any) -> Any:
    """Enters `context` (a progress bar...), to be exited with the run."""
    return self._stack.enter_context(context)

  def close(self) -> None:
    """Restores the signals, closes the checkpoints and releases the lock."""
    self._stack.close()

  def __enter__(self) -> Self:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def open_run(workdir: pathlib.Path, config: ml_collections.ConfigDict,
             create_state: Callable[[], Any], *, check_resume: ResumeCheck,
             num_steps: int, keep_checkpoints: int,
             best_metric: str | None = None,
             target_for: Callable[[Any], checkpoints.TargetFor] | None = None,
             stop_signals: bool = False) -> Run:
  """Opens the run of `config` in `workdir` (created if missing).

  Takes the lock (process 0), checks a run with checkpoints with
  `check_resume`, then creates the fresh state (`create_state()`: a refused
  run does no heavy work), restores the newest checkpoint into it (through
  `target_for(fresh state)`, see `checkpoints.restore_newest`) or starts
  from it; unless finished (`num_steps` done), opens the checkpoint manager
  (the newest `keep_checkpoints` and the best by `best_metric`) and
  metrics.jsonl, adds this start to run.json and, with `stop_signals`,
  catches SIGINT and SIGTERM. The run closes at the end of a `with` block or of the function
  decorated with `closes_runs` that opened it.

  Example:
    >>> import tempfile
    >>> workdir = pathlib.Path(tempfile.mkdtemp())
    >>> config = ml_collections.ConfigDict({'seed': 0})
    >>> open_fresh = functools.partial(
    ...     open_run, workdir, config, lambda: {'w': jax.numpy.zeros(2)},
    ...     check_resume=lambda recorded, done: None, num_steps=2,
    ...     keep_checkpoints=1)
    >>> with open_fresh() as run:
    ...   run.log.write(step=1, loss=0.5)
    ...   run.save(1, {'w': jax.numpy.ones(2)})
    >>> with open_fresh() as run:  # doctest: +ELLIPSIS
    ...   print(run.step, run.state['w'])
    Resuming from the checkpoint at step 1 in ...
    1 [1. 1.]
  """
  is_main = jax.process_index() == 0
  # Until the run is returned, a failure closes what is open.
  with contextlib.ExitStack() as stack:
    workdir.mkdir(parents=True, exist_ok=True)
    if is_main:
      stack.enter_context(workdir_lib.lock(workdir))
    recorded = workdir_lib.read_record(workdir)
    saved = checkpoints.steps(workdir / 'checkpoints')
    if saved:
      check_resume(recorded['config'] if recorded else {}, saved[-1])
    fresh = create_state()
    step, restored = checkpoints.restore_newest(
        workdir, fresh, is_main=is_main,
        target_for=target_for(fresh) if target_for else None)
    state = fresh if restored is None else restored
    if step >= num_steps:
      run = Run(workdir, step, state, stack.pop_all(), finished=True)
    else:
      manager = checkpoints.manager(workdir, keep_checkpoints,
                                    best=best_metric)
      stack.callback(checkpoints.close, manager)
      # Reads (and checks) metrics.jsonl before anything is said or written.
      log = workdir_lib.MetricsLog(workdir / 'metrics.jsonl', step,
                                   enabled=is_main)
      if is_main:
        workdir_lib.write_record(workdir, config.to_dict(), recorded)
        if step:
          print(f'Resuming from the checkpoint at step {step} in {workdir}.')
      stop = (stack.enter_context(StopSignals(jax.process_count() > 1))
              if stop_signals else None)
      run = Run(workdir, step, state, stack.pop_all(), finished=False,
                log=log, manager=manager, stop=stop)
  if (closing := _closing.get()) is not None:
    closing.callback(run.close)
  return run
