"""Input pipeline: random-access sources, deterministic order, host shards."""

from collections.abc import Iterator, Sequence
import dataclasses
import functools
import pathlib
from typing import Any

import grain
import numpy as np

from train import errors
from train import idx

DIGITS = 'digits'
FASHION_MNIST = 'fashion_mnist'
# Where Debian's package dataset-fashion-mnist installs the four IDX files.
FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
# Each split's (images, labels) files; each may be gzipped, with `.gz` added.
FASHION_MNIST_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
_FASHION_MNIST_SIZES = {'train': 60_000, 'test': 10_000}
_FASHION_MNIST_ADVICE = (
    'Install it with `apt-get install dataset-fashion-mnist` (add --reinstall '
    f'for a damaged file; Debian puts the files in {FASHION_MNIST_DIR}/), or '
    'pass --config.data_dir=DIR for a directory holding '
    'train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, '
    't10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped or not).')
# Published per-channel statistics (0..255); other TFDS datasets' are sampled.
_KNOWN_STATS = {
    'cifar10': ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    'cifar100': ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4))}
ConfigError = errors.ConfigError
DatasetError = errors.DatasetError


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train and test splits as random-access sources of image/label records."""
  name: str
  train: Sequence[dict[str, Any]]
  test: Sequence[dict[str, Any]]
  num_classes: int
  image_shape: tuple[int, int, int]
  # Per-channel statistics of the training images, in [0, 255] units.
  mean: tuple[float, ...]
  std: tuple[float, ...]
  # Training images held out for tuning (config.validation_split), or None.
  validation: Sequence[dict[str, Any]] | None = None


class _ArraySource(Sequence):
  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.images, self.labels = images, labels

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index):
    return {'image': self.images[index], 'label': self.labels[index]}


def _in_memory(name: str, train, test, num_classes: int,
               validation=None) -> Dataset:
  # Exact statistics from histograms, chunked: bincount copies to int64.
  images, values = train[0], np.arange(256, dtype=np.float64)
  counts = np.zeros((images.shape[-1], 256), np.int64)
  for chunk in np.split(images, range(4096, len(images), 4096)):
    counts += [np.bincount(channel.ravel(), minlength=256)
               for channel in np.moveaxis(chunk, -1, 0)]
  total = counts.sum(axis=1)
  mean = counts @ values / total
  std = np.sqrt((counts * (values - mean[:, None]) ** 2).sum(axis=1) / total)
  return Dataset(name, _ArraySource(*train), _ArraySource(*test), num_classes,
                 images.shape[1:], tuple(mean.tolist()), tuple(std.tolist()),
                 validation)


def _fashion_mnist_split(images_path, labels_path, size: int):
  images = idx.read(images_path, idx.IMAGES)
  labels = idx.read(labels_path, idx.LABELS)
  if images.shape[1:] != (28, 28):
    raise DatasetError(f'{images_path} holds {images.shape[1]}x'
                       f'{images.shape[2]} images, not 28x28')
  if len(images) != len(labels):
    raise DatasetError(
        f'{labels_path} holds {len(labels)} labels but {images_path} '
        f'{len(images)} images (Fashion-MNIST has {size} of each)')
  if not len(images):
    raise DatasetError(
        f'{images_path} holds no images (Fashion-MNIST has {size})')
  if (bad := np.flatnonzero(labels >= 10)).size:
    raise DatasetError(f'{labels_path} holds label {labels[bad[0]]} at '
                       f"position {bad[0]}; Fashion-MNIST's labels are 0..9")
  return images[..., None], labels.astype(np.int32)


def _fashion_mnist(data_dir: str | None) -> Dataset | None:
  """Fashion-MNIST from its four IDX files, or None to read a TFDS copy."""
  directory = pathlib.Path(data_dir or FASHION_MNIST_DIR).expanduser()

  def existing(name: str) -> pathlib.Path | None:
    candidates = (directory / f'{name}.gz', directory / name)
    return next((path for path in candidates if path.is_file()), None)

  files = {name: existing(name)
           for names in FASHION_MNIST_FILES.values() for name in names}
  found = [path.name for path in files.values() if path]
  if not found and (prepared := _tfds_dir(FASHION_MNIST, data_dir))[1]:
    return None
  try:
    if not found:
      raise DatasetError(
          f'none of its four IDX files is in {directory}, and no TFDS '
          f'{FASHION_MNIST!r} is prepared in {prepared[0].parent}')
    if missing := [name for name, path in files.items() if path is None]:
      raise DatasetError(
          f'{directory / missing[0]}.gz (or {missing[0]}) is missing; '
          f'{directory} holds {", ".join(found)}')
    train, test = (
        _fashion_mnist_split(*map(files.get, names), _FASHION_MNIST_SIZES[s])
        for s, names in FASHION_MNIST_FILES.items())
  except (idx.IdxError, OSError, DatasetError) as e:
    raise DatasetError(f'Fashion-MNIST cannot be read: {e}. '
                       f'{_FASHION_MNIST_ADVICE}') from None
  return _in_memory(FASHION_MNIST, train, test, num_classes=10)


def _tfds_dir(name: str, data_dir: str | None):
  path = pathlib.Path(data_dir or '~/tensorflow_datasets').expanduser() / name
  return path, sorted(path.glob('*/dataset_info.json'))


def _tfds(name: str, data_dir: str | None, splits) -> Dataset:
  """A prepared TFDS image-classification dataset, read without TensorFlow."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    try:
      train, test = (tfds.data_source(name, split=split, data_dir=data_dir,
                                      download=False) for split in splits)
    except tfds.core.registered.DatasetNotFoundError:
      # Not in the catalog: the newest version of a user-built dataset.
      path, versions = _tfds_dir(name, data_dir)
      if not versions:
        raise DatasetError(  # pylint: disable=raise-missing-from
            f'Unknown dataset {name!r}: it is neither {DIGITS!r} nor '
            f'{FASHION_MNIST!r} (read offline), nor a TensorFlow Datasets name '
            '(see https://www.tensorflow.org/datasets/catalog), nor a dataset '
            f'prepared with a builder of your own under {path}/<version>/ '
            '(pass --config.data_dir=DIR for another location).')
      builder = tfds.builder_from_directory(versions[-1].parent)
      train, test = (builder.as_data_source(split=split) for split in splits)
  except DatasetError:
    raise
  except (NotImplementedError, AssertionError, FileNotFoundError,
          RuntimeError, ValueError, KeyError) as e:
    raise DatasetError(
        f'TFDS dataset {name!r} is not prepared in '
        f'{data_dir or "~/tensorflow_datasets"} (as array_record). This '
        'machine reads prepared datasets only; prepare it once where there '
        'is network access:\n    pip install tensorflow tensorflow-datasets\n'
        f'    tfds build {name} --file_format=array_record --data_dir=DIR\n'
        'then pass --config.data_dir=DIR.\n'
        f'(TFDS said: {str(e).splitlines()[0]})') from None
  features = train.dataset_info.features
  if name in _KNOWN_STATS:
    mean, std = _KNOWN_STATS[name]
  else:
    sample = np.stack([train[i]['image'] for i in range(min(len(train), 512))])
    mean = tuple(sample.mean(axis=(0, 1, 2)).tolist())
    std = tuple(np.maximum(sample.std(axis=(0, 1, 2)), 1.0).tolist())
  return Dataset(name, train, test, features['label'].num_classes,
                 tuple(features['image'].shape), mean, std)


def _balanced_subset(dataset: Dataset, size: int, split_seed: int) -> Dataset:
  if not isinstance(dataset.train, _ArraySource):
    raise ConfigError(
        f'config.train_subset={size} needs a dataset held in memory '
        f'({DIGITS!r}, or {FASHION_MNIST!r} read from its IDX files), not the '
        f'TFDS dataset {dataset.name!r}; set it to 0.')
  classes = dataset.num_classes
  if size % classes:
    raise ConfigError(
        f'config.train_subset={size} is not a multiple of the {classes} '
        f'classes of {dataset.name!r} (the subset takes as many images of '
        f'each); use e.g. {max(size - size % classes, classes)}.')
  images, labels = dataset.train.images, dataset.train.labels
  counts = np.bincount(labels, minlength=classes)
  if size // classes > counts.min():
    raise ConfigError(
        f'config.train_subset={size} takes {size // classes} images of each '
        f'class, but class {counts.argmin()} of {dataset.name!r} has only '
        f'{counts.min()} training images; use at most '
        f'{counts.min() * classes}.')
  # A stream of its own, and a larger subset holds a smaller one.
  rng = np.random.default_rng([split_seed, 1])
  chosen = np.sort(np.concatenate([
      rng.permutation(np.flatnonzero(labels == c))[:size // classes]
      for c in range(classes)]))
  return _in_memory(dataset.name, (images[chosen], labels[chosen]),
                    (dataset.test.images, dataset.test.labels), classes,
                    dataset.validation)


def load_dataset(name: str, *, data_dir: str | None = None, split_seed: int = 0,
                 test_fraction: float = 0.2, train_split: str = 'train',
                 test_split: str = 'test', train_subset: int = 0,
                 validation_split: int = 0) -> Dataset:
  """Loads `digits`, `fashion_mnist` (IDX files, else TFDS) or a TFDS dataset;
  `split_seed` draws the digits' test split, the `validation_split` training
  examples held out (if not 0) and then a `train_subset` (if not 0).

  >>> ds = load_dataset('digits', train_subset=100, validation_split=200)
  >>> len(ds.train), len(ds.validation), len(ds.test), ds.image_shape
  (100, 200, 359, (8, 8, 1))
  """
  if name == DIGITS:  # scikit-learn's 1797 8x8 images, in the package
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(split_seed).permutation(len(labels))
    test, train = np.split(order, [int(round(len(labels) * test_fraction))])
    dataset = _in_memory(DIGITS, (images[train], labels[train]),
                         (images[test], labels[test]), num_classes=10)
  elif name != FASHION_MNIST or (dataset := _fashion_mnist(data_dir)) is None:
    dataset = _tfds(name, data_dir, (train_split, test_split))
  if validation_split:
    try:
      rest, held = hold_out(dataset, validation_split, split_seed)
    except DatasetError as e:
      raise ConfigError(f'config.validation_split={validation_split}: {e}'
                        ) from None
    # Statistics of the images trained on, the held-out ones excluded.
    dataset = _in_memory(dataset.name, (rest.train.images, rest.train.labels),
                         as_arrays(dataset.test), dataset.num_classes,
                         _ArraySource(held['image'], held['label']))
  if train_subset:
    dataset = _balanced_subset(dataset, train_subset, split_seed)
  return dataset


def tuning_split(dataset: Dataset) -> str:
  """The split a run is tuned on, its best checkpoint chosen by: the
  validation split where there is one, else the test split.

  >>> tuning_split(load_dataset('digits', validation_split=100))
  'validation'
  """
  return 'validation' if dataset.validation is not None else 'test'


def dataset_from_config(config) -> Dataset:
  """Loads the dataset a training config names (see train/configs)."""
  keys = ('data_dir', 'split_seed', 'train_split', 'test_split', 'train_subset',
          'validation_split')
  return load_dataset(config.dataset,
                      **{key: config[key] for key in keys if key in config})


def _batch(source, rows, **extra) -> dict[str, np.ndarray]:
  """Examples `rows` of `source`, read in order: uint8 images, int32 labels."""
  records = [source[i] for i in rows]
  return {key: np.stack([np.asarray(r[key], dtype) for r in records])
          for key, dtype in (('image', np.uint8), ('label', np.int32))} | extra


def steps_per_epoch(dataset: Dataset, global_batch_size: int) -> int:
  """Number of full global batches in one pass over the training split."""
  if not (steps := len(dataset.train) // global_batch_size):
    raise DatasetError(f'batch_size {global_batch_size} is larger than the '
                       f'{len(dataset.train)} training examples of '
                       f'{dataset.name!r}; use a smaller batch_size.')
  return steps


def train_batches(dataset: Dataset, *, global_batch_size: int, seed: int,
                  start_step: int, num_steps: int, process_index: int = 0,
                  process_count: int = 1,
                  num_threads: int = 4) -> Iterator[dict[str, np.ndarray]]:
  """Yields this host's rows of global training batches `start_step..`, from
  `epoch_order`, plus 'index', the rows' positions in the global batch."""
  if global_batch_size % process_count:
    raise DatasetError(f'batch_size {global_batch_size} is not divisible by '
                       f'the {process_count} processes.')
  per_epoch = steps_per_epoch(dataset, global_batch_size)
  local, size = global_batch_size // process_count, len(dataset.train)
  order, offset = _order(size, seed), process_index * local
  positions = np.arange(offset, offset + local, dtype=np.int32)
  def read(step: int) -> dict[str, np.ndarray]:
    epoch, within = divmod(step, per_epoch)
    first = epoch * size + within * global_batch_size + offset
    return _batch(dataset.train, (order[first + i] for i in range(local)),
                  index=positions)
  steps = grain.MapDataset.range(start_step, num_steps).map(read)
  yield from steps.to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=8))


def _order(size: int, seed: int) -> grain.MapDataset:
  return grain.MapDataset.range(size).shuffle(seed=seed).repeat()


@functools.lru_cache(maxsize=256)  # Paired runs read the same orders.
def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
  """The permutation of the training split `train_batches` reads in `epoch`.

  >>> sorted(epoch_order(10, seed=0, epoch=0).tolist()) == list(range(10))
  True
  """
  rows = range(epoch * size, (epoch + 1) * size)
  return np.fromiter(map(_order(size, seed).__getitem__, rows), np.int32, size)


def eval_batches(dataset: Dataset, *, batch_size: int, process_index: int = 0,
                 process_count: int = 1,
                 split: str = 'test') -> Iterator[dict[str, np.ndarray]]:
  """Yields this host's rows of `split`, padded with rows whose 'mask' is 0."""
  source = {'train': dataset.train, 'test': dataset.test,
            'validation': dataset.validation}[split]
  local, size = batch_size // process_count, len(source)
  for start in range(0, size, batch_size):
    rows = range(start + process_index * local,
                 start + (process_index + 1) * local)
    yield _batch(source, (i if i < size else 0 for i in rows),
                 mask=np.array([i < size for i in rows], np.float32))


def as_arrays(
    source: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
  """Every example of a split, read in order: (uint8 images, int32 labels).

  >>> [a.shape for a in as_arrays(load_dataset('digits').test)]
  [(359, 8, 8, 1), (359,)]
  """
  batch = _batch(source, range(len(source)))
  return batch['image'], batch['label']


def hold_out(dataset: Dataset, size: int,
             seed: int) -> tuple[Dataset, dict[str, np.ndarray]]:
  """Holds out `size // num_classes` training examples per class with `seed`.

  >>> rest, held = hold_out(load_dataset('digits'), 100, seed=0)
  >>> len(rest.train), np.bincount(held['label']).tolist()
  (1338, [10, 10, 10, 10, 10, 10, 10, 10, 10, 10])
  """
  classes = dataset.num_classes
  if size < classes or size % classes:
    raise DatasetError(
        f'the held-out set must take as many examples of each of the '
        f'{classes} classes of {dataset.name!r}: its size must be a positive '
        f'multiple of {classes}, got {size}.')
  images, labels = as_arrays(dataset.train)
  rng, per_class, held = np.random.default_rng(seed), size // classes, []
  for label in range(classes):
    rows = np.flatnonzero(labels == label)
    if len(rows) <= per_class:
      raise DatasetError(
          f'class {label} of {dataset.name!r} has {len(rows)} training '
          f'examples: holding out {per_class} of each class leaves it none to '
          'train on; hold out fewer.')
    held.append(rng.choice(rows, per_class, replace=False))
  held = np.sort(np.concatenate(held))
  rest = np.setdiff1d(np.arange(len(labels)), held)
  return (dataclasses.replace(dataset,
                              train=_ArraySource(images[rest], labels[rest])),
          {'image': images[held], 'label': labels[held]})
