"""MLR-SNet nets on disk (train.meta_train writes them): an .npz of float32
`snapshot{j}/{layer}/{kernel|bias}` arrays and `epochs`, each one's meta-epoch.
No JAX here: config_validation reads its files to check a config."""

import os
import pathlib
import re
from typing import Any, NamedTuple

import numpy as np

# The net `config.mlr_snet.checkpoint = None` means.
SHIPPED = pathlib.Path(__file__).with_name('mlr_snet_digits.npz')
FILENAME = 'mlr_snet.npz'  # What meta_train writes in its workdir.

_KEY = re.compile(r'snapshot(\d+)/(\w+)/(kernel|bias)')


class Nets(NamedTuple):
  """Snapshots (`plrs_jax.mlr_snet_init` trees, oldest first) and epochs."""
  snapshots: list[dict[str, dict[str, np.ndarray]]]
  epochs: list[int]


def resolve(path: str | os.PathLike[str] | None) -> pathlib.Path:
  """The file `path` names: the shipped net for None, `DIR/mlr_snet.npz`
  for a meta-training workdir DIR, else `path` itself.

  Example:
    >>> resolve(None).name
    'mlr_snet_digits.npz'
  """
  if path is None:
    return SHIPPED
  path = pathlib.Path(path).expanduser()
  return path / FILENAME if path.is_dir() else path


def save(path: str | os.PathLike[str], snapshots: list[Any],
         epochs: list[int]) -> pathlib.Path:
  """Writes the snapshots (through a temporary file) and returns the path.

  Example:
    >>> import tempfile
    >>> net = {'head': {'kernel': np.ones((50, 1)), 'bias': np.zeros(1)}}
    >>> path = save(pathlib.Path(tempfile.mkdtemp()) / 'n.npz', [net], [3])
    >>> arrays = np.load(path)
    >>> sorted(arrays), arrays['snapshot0/head/bias'].dtype.name
    (['epochs', 'snapshot0/head/bias', 'snapshot0/head/kernel'], 'float32')
  """
  if len(snapshots) != len(epochs):
    raise ValueError(f'{len(snapshots)} snapshots but {len(epochs)} epochs.')
  arrays = {f'snapshot{j}/{layer}/{name}': np.asarray(leaf, np.float32)
            for j, net in enumerate(snapshots) for layer, leaves in net.items()
            for name, leaf in leaves.items()}
  temporary = (path := pathlib.Path(path)).with_name(path.name + '.tmp.npz')
  np.savez(temporary, epochs=np.asarray(epochs, np.int32), **arrays)
  os.replace(temporary, path)
  return path


def load(path: str | os.PathLike[str] | None) -> Nets:
  """Reads the snapshots of `resolve(path)` (a file `save` wrote, a workdir, or
  None: the shipped net); ValueError where that is no file of snapshots.

  Example:
    >>> nets = load(None)
    >>> len(nets.snapshots), nets.snapshots[0]['head']['kernel'].shape
    (3, (50, 1))
  """
  file = resolve(path)
  bad = f'{file} is no file of MLR-SNet snapshots'
  if not file.is_file():
    raise ValueError(f'{bad}: give the mlr_snet.npz that python -m '
                     'train.meta_train writes (or its workdir), or leave it '
                     f'unset for the shipped net, {SHIPPED.name}.')
  try:
    with np.load(file) as arrays:
      arrays = dict(arrays)
  except (OSError, ValueError) as e:
    raise ValueError(f'cannot read {file} as .npz: {e}') from None
  epochs = arrays.pop('epochs', None)
  snapshots: dict[int, dict[str, dict[str, np.ndarray]]] = {}
  for key, value in arrays.items():
    if (match := _KEY.fullmatch(key)) is None:
      raise ValueError(f'{bad}: it holds {key!r}, not '
                       'snapshot<j>/<layer>/<kernel|bias>.')
    j, layer, name = match.groups()
    snapshots.setdefault(int(j), {}).setdefault(layer, {})[name] = value
  if (epochs is None or not snapshots
      or sorted(snapshots) != list(range(len(epochs)))):
    raise ValueError(f'{bad}: it needs `epochs` and snapshot0, snapshot1, '
                     '... , one per epoch.')
  return Nets(snapshots=[snapshots[j] for j in range(len(epochs))],
              epochs=[int(e) for e in epochs])
