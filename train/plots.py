"""A run's figure: learning rate, loss, accuracy and AutoDrop's or two-regime's
state; `python -m train.plots WORKDIR` writes WORKDIR/run.png."""

from collections.abc import Sequence
import pathlib
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib import ticker  # pylint: disable=g-import-not-at-top

from train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

# Per-epoch fields of train.optimizer_metrics; _DEGREES go on a right axis.
_DEGREES = ('angular_velocity', 'threshold')
OPTIMIZER_FIELDS = ('optimizer_scale', 'regime', *_DEGREES)


def read_metrics(path: pathlib.Path) -> tuple[list[dict], list[dict]]:
  """Splits metrics.jsonl into per-step and per-epoch records."""
  records = workdir_lib.read_metrics(path)
  return ([r for r in records if 'epoch' not in r],
          [r for r in records if 'epoch' in r])


def _xy(records, x, y):
  return [r[x] for r in records], [r[y] for r in records]


def plot_run(metrics_path: pathlib.Path, out_path: pathlib.Path,
             title: str = '',
             learning_rates: Sequence[float] | None = None) -> pathlib.Path:
  """Draws metrics.jsonl's panels into the PNG `out_path`, and returns it;
  `learning_rates[i]`, if given, is step i + 1's rate (else the logged ones)."""
  steps, epochs = read_metrics(metrics_path)
  fields = [f for f in OPTIMIZER_FIELDS if any(f in r for r in epochs)]
  fig, axes = plt.subplots(1, 3 + bool(fields),
                           figsize=(15 + 5 * bool(fields), 4))
  ax_lr, ax_loss, ax_acc = axes[:3]
  if learning_rates is not None:
    ax_lr.plot(range(1, len(learning_rates) + 1), learning_rates, lw=0.5)
  else:
    ax_lr.plot(*_xy(steps, 'step', 'lr'), lw=0.8, marker='.', ms=2)
  ax_lr.set(title='learning rate', xlabel='step')
  ax_loss.plot(*_xy(steps, 'step', 'train_loss'), lw=0.8, label='logged steps')
  ax_loss.plot(*_xy(epochs, 'step', 'train_loss'), marker='o',
               label='epoch mean')
  ax_loss.set(title='training loss', xlabel='step', yscale='log')
  ax_acc.plot(*_xy(epochs, 'epoch', 'test_accuracy'), marker='o', label='test')
  ax_acc.plot(*_xy(epochs, 'epoch', 'train_accuracy'), marker='.', ls='--',
              label='train')
  ax_acc.set(title='accuracy per epoch', xlabel='epoch')
  if fields:
    _plot_optimizer(axes[3], epochs, fields)
  for ax in axes:
    ax.grid(alpha=0.3)
  for ax in (ax_loss, ax_acc):
    ax.legend()
  for ax in axes[2:]:
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out_path := pathlib.Path(out_path), dpi=110)
  plt.close(fig)
  return out_path


def _plot_optimizer(ax, epochs: list[dict], fields: list[str]) -> None:
  def series(field):
    return _xy([r for r in epochs if r.get(field) is not None], 'epoch', field)
  left = [f for f in fields if f not in _DEGREES]
  for field in left:
    ax.plot(*series(field), marker='o', label=field.replace('_', ' '))
  ax.set(title='optimizer state per epoch', xlabel='epoch',
         ylabel=' / '.join(left))
  if left:
    ax.legend(loc='upper left')
  if degrees := [f for f in fields if f in _DEGREES]:
    twin = ax.twinx()
    for field, style, color in zip(degrees, ('-', '--'), ('C3', 'C4')):
      twin.plot(*series(field), ls=style, marker='.', color=color,
                label=f'{field.replace("_", " ")} (degrees)')
    twin.set(ylabel='degrees')
    twin.legend(loc='upper right')


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit('usage: python -m train.plots WORKDIR')
  workdir = pathlib.Path(sys.argv[1])
  print(plot_run(workdir / 'metrics.jsonl', workdir / 'run.png'))
