"""The figure of a run: learning rate, training loss and test accuracy.

Runs whose optimizer logs a state of its own (AutoDrop's scale, angular
velocity and threshold; the two-regime switch) get a fourth panel with it.

Usage, for a finished or running workdir:

    python -m train.plots /tmp/run        # writes /tmp/run/run.png
"""

from collections.abc import Sequence
import pathlib
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib import ticker  # pylint: disable=g-import-not-at-top

from train import workdir as workdirs  # pylint: disable=g-import-not-at-top


def read_metrics(path: pathlib.Path) -> tuple[list[dict], list[dict]]:
  """Splits metrics.jsonl into per-step and per-epoch records."""
  steps, epochs = [], []
  for record in workdirs.read_metrics(path):
    (epochs if 'epoch' in record else steps).append(record)
  return steps, epochs


def plot_run(metrics_path: pathlib.Path, out_path: pathlib.Path,
             title: str = '',
             learning_rates: Sequence[float] | None = None) -> pathlib.Path:
  """Draws three panels from metrics.jsonl and writes them as a PNG.

  Args:
    metrics_path: the run's metrics.jsonl.
    out_path: where the PNG goes.
    title: the figure's title.
    learning_rates: the rate of every step, if known (the schedule is a pure
      function of the step, so the trainer passes it); otherwise the rates
      logged every `log_every_steps` are drawn. Entry i is the rate of step
      i + 1 (steps count updates from 1, optax's count from 0).

  Returns:
    `out_path`.
  """
  steps, epochs = read_metrics(metrics_path)
  optimizer_fields = [f for f in OPTIMIZER_FIELDS
                      if any(f in r for r in epochs)]
  fig, axes = plt.subplots(1, 3 + bool(optimizer_fields),
                           figsize=(15 + 5 * bool(optimizer_fields), 4))
  ax_lr, ax_loss, ax_acc = axes[:3]
  if learning_rates is not None:
    ax_lr.plot(range(1, len(learning_rates) + 1), learning_rates, lw=0.5)
  else:
    ax_lr.plot([r['step'] for r in steps], [r['lr'] for r in steps], lw=0.8,
               marker='.', ms=2)
  ax_lr.set(title='learning rate', xlabel='step')
  ax_loss.plot([r['step'] for r in steps], [r['train_loss'] for r in steps],
               lw=0.8, label='logged steps')
  ax_loss.plot([r['step'] for r in epochs], [r['train_loss'] for r in epochs],
               marker='o', label='epoch mean')
  ax_loss.set(title='training loss', xlabel='step', yscale='log')
  ax_loss.legend()
  ax_acc.plot([r['epoch'] for r in epochs], [r['test_accuracy'] for r in epochs],
              marker='o', label='test')
  ax_acc.plot([r['epoch'] for r in epochs],
              [r['train_accuracy'] for r in epochs], marker='.', ls='--',
              label='train')
  ax_acc.set(title='accuracy per epoch', xlabel='epoch')
  ax_acc.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax_acc.legend()
  if optimizer_fields:
    _plot_optimizer(axes[3], epochs, optimizer_fields)
  for ax in axes:
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  out_path = pathlib.Path(out_path)
  fig.savefig(out_path, dpi=110)
  plt.close(fig)
  return out_path


# Per-epoch fields of train.optimizer_metrics: left axis (a factor, the
# regime) and right axis (degrees).
OPTIMIZER_FIELDS = ('optimizer_scale', 'regime', 'angular_velocity',
                    'threshold')
_DEGREES = ('angular_velocity', 'threshold')


def _plot_optimizer(ax, epochs: list[dict], fields: list[str]) -> None:
  """The optimizer's state at the end of each epoch."""
  def series(field):
    rows = [r for r in epochs if r.get(field) is not None]
    return [r['epoch'] for r in rows], [r[field] for r in rows]

  left = [f for f in fields if f not in _DEGREES]
  for field in left:
    ax.plot(*series(field), marker='o', label=field.replace('_', ' '))
  ax.set(title='optimizer state per epoch', xlabel='epoch',
         ylabel=' / '.join(left))
  if left:
    ax.legend(loc='upper left')
  degrees = [f for f in fields if f in _DEGREES]
  if degrees:
    twin = ax.twinx()
    for field, style in zip(degrees, ('-', '--')):
      twin.plot(*series(field), ls=style, marker='.', color='C3' if style == '-' else 'C4',
                label=f'{field.replace("_", " ")} (degrees)')
    twin.set(ylabel='degrees')
    twin.legend(loc='upper right')
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit('usage: python -m train.plots WORKDIR')
  workdir = pathlib.Path(sys.argv[1])
  print(plot_run(workdir / 'metrics.jsonl', workdir / 'run.png'))
