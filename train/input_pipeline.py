"""Input pipeline: random-access sources, deterministic shuffling, host shards.

Every batch is a pure function of (seed, step): grain shuffles each epoch with
its own permutation derived from the seed, and batch `step` holds examples
`[step * B, (step + 1) * B)` of that stream within its epoch. A resumed run
therefore reads exactly the batches it would have read, and a host reads only
its own rows of each global batch.

Images stay uint8 until they reach the device; normalisation and augmentation
happen inside the jitted train step (see train.py), keyed by (seed, step,
position in the global batch), so they cost no host work and give the same
result for any number of devices or hosts.
"""

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
# Each split's (images, labels) files, named as their authors name them; each
# may be gzipped, with `.gz` appended.
FASHION_MNIST_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
_FASHION_MNIST_SIZES = {'train': 60_000, 'test': 10_000}
_FASHION_MNIST_ADVICE = (
    'Install it with `apt-get install dataset-fashion-mnist` (add --reinstall '
    f'for a damaged file; Debian puts the files in {FASHION_MNIST_DIR}/), or '
    'pass --config.data_dir=DIR for a directory holding '
    'train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, '
    't10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped or not).')


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


class _ArraySource(Sequence):
  """An in-memory random-access source of {'image', 'label'} records."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.images, self.labels = images, labels

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index):
    return {'image': self.images[index], 'label': self.labels[index]}


def _channel_statistics(
    images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean and standard deviation of uint8 images (N, H, W, C).

  Computed exactly from each channel's histogram of the 256 values, without
  a float copy of the images.

  Example:
    >>> images = np.array([0, 2, 4, 6], np.uint8).reshape(1, 2, 2, 1)
    >>> _channel_statistics(images)
    ((3.0,), (2.23606797749979,))
  """
  values = np.arange(256, dtype=np.float64)
  counts = np.zeros((images.shape[-1], 256), np.int64)
  # In chunks: bincount copies its input as int64 (8 bytes a pixel).
  for start in range(0, len(images), 4096):
    chunk = images[start:start + 4096]
    for channel, channel_counts in enumerate(counts):
      channel_counts += np.bincount(chunk[..., channel].ravel(), minlength=256)
  total = counts.sum(axis=1)
  mean = counts @ values / total
  variance = (counts * (values - mean[:, None]) ** 2).sum(axis=1) / total
  return tuple(mean.tolist()), tuple(np.sqrt(variance).tolist())


def _in_memory(name: str, train: tuple[np.ndarray, np.ndarray],
               test: tuple[np.ndarray, np.ndarray],
               num_classes: int) -> Dataset:
  """A dataset of (uint8 images (N, H, W, C), int32 labels) arrays."""
  mean, std = _channel_statistics(train[0])
  return Dataset(name=name, train=_ArraySource(*train),
                 test=_ArraySource(*test), num_classes=num_classes,
                 image_shape=train[0].shape[1:], mean=mean, std=std)


def _digits(split_seed: int, test_fraction: float) -> Dataset:
  """scikit-learn's 8x8 digits (1797 images, shipped inside the package)."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  # Pixel values are 0..16; store them as uint8 in 0..255 like other images.
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  order = np.random.default_rng(split_seed).permutation(len(labels))
  num_test = int(round(len(labels) * test_fraction))
  test, train = order[:num_test], order[num_test:]
  return _in_memory(DIGITS, (images[train], labels[train]),
                    (images[test], labels[test]), num_classes=10)


def _fashion_mnist_error(problem: str) -> DatasetError:
  return DatasetError(
      f'Fashion-MNIST cannot be read: {problem}. {_FASHION_MNIST_ADVICE}')


def _fashion_mnist_files(data_dir: str | None):
  """The directory, and {name: `name.gz` or `name` there, or None}."""
  directory = pathlib.Path(data_dir or FASHION_MNIST_DIR).expanduser()
  files = {}
  for names in FASHION_MNIST_FILES.values():
    for name in names:
      candidates = (directory / f'{name}.gz', directory / name)
      files[name] = next((path for path in candidates if path.is_file()), None)
  return directory, files


def _fashion_mnist_in_tfds(data_dir: str | None) -> bool:
  """Whether to read Fashion-MNIST with TFDS: no IDX file, a TFDS copy."""
  _, files = _fashion_mnist_files(data_dir)
  return (not any(files.values())
          and bool(_prepared_versions(FASHION_MNIST, data_dir)))


def _fashion_mnist_split(split: str, images_path: pathlib.Path,
                         labels_path: pathlib.Path):
  """A split's (images (N, 28, 28, 1), int32 labels), checked."""
  try:
    images = idx.read(images_path, idx.IMAGES)
    labels = idx.read(labels_path, idx.LABELS)
  except (idx.IdxError, OSError) as e:
    raise _fashion_mnist_error(str(e)) from None
  size = _FASHION_MNIST_SIZES[split]
  if images.shape[1:] != (28, 28):
    problem = (f'{images_path} holds {images.shape[1]}x{images.shape[2]} '
               'images, not 28x28')
  elif len(images) != len(labels):
    problem = (f'{labels_path} holds {len(labels)} labels but {images_path} '
               f'{len(images)} images (Fashion-MNIST has {size} of each)')
  elif not len(images):
    problem = f'{images_path} holds no images (Fashion-MNIST has {size})'
  elif labels.max() >= 10:
    position = int(np.argmax(labels >= 10))
    problem = (f'{labels_path} holds label {labels[position]} at position '
               f'{position}; Fashion-MNIST\'s labels are 0..9')
  else:
    return images[..., None], labels.astype(np.int32)
  raise _fashion_mnist_error(problem)


def _fashion_mnist(data_dir: str | None) -> Dataset:
  """Fashion-MNIST from its four IDX files (60,000 + 10,000 28x28 images)."""
  directory, files = _fashion_mnist_files(data_dir)
  found = [path.name for path in files.values() if path]
  if not found:
    raise _fashion_mnist_error(
        f'none of its four IDX files is in {directory}, and no TFDS '
        f'{FASHION_MNIST!r} is prepared in {_tfds_root(data_dir)}')
  for name, path in files.items():
    if path is None:
      raise _fashion_mnist_error(
          f'{directory / name}.gz (or {name}) is missing; {directory} holds '
          f'{", ".join(found)}')
  train, test = (
      _fashion_mnist_split(split, *(files[name] for name in names))
      for split, names in FASHION_MNIST_FILES.items())
  return _in_memory(FASHION_MNIST, train, test, num_classes=10)


# Published per-channel statistics (0..255) of common TFDS datasets; others are
# estimated from the first training images.
_KNOWN_STATS = {
    'cifar10': ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    'cifar100': ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
}


def _tfds_root(data_dir: str | None) -> pathlib.Path:
  return pathlib.Path(data_dir or '~/tensorflow_datasets').expanduser()


def _prepared_versions(name: str, data_dir: str | None) -> list[pathlib.Path]:
  """The dataset_info.json of each version of `name` prepared for TFDS."""
  return sorted((_tfds_root(data_dir) / name).glob('*/dataset_info.json'))


def _prepared_builder(name: str, data_dir: str | None):
  """The newest prepared version of a dataset outside the TFDS catalog."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  versions = _prepared_versions(name, data_dir)
  if not versions:
    raise DatasetError(
        f'Unknown dataset {name!r}: it is neither {DIGITS!r} nor '
        f'{FASHION_MNIST!r} (read offline), nor a TensorFlow Datasets name '
        '(see https://www.tensorflow.org/datasets/catalog), nor a dataset '
        'prepared with a builder of your own under '
        f'{_tfds_root(data_dir) / name}/<version>/ (pass '
        '--config.data_dir=DIR for another location).')
  return tfds.builder_from_directory(versions[-1].parent)


def _tfds(name: str, data_dir: str | None, train_split: str,
          test_split: str) -> Dataset:
  """A prepared TFDS image-classification dataset, read without TensorFlow."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    try:
      train = tfds.data_source(name, split=train_split, data_dir=data_dir,
                               download=False)
      test = tfds.data_source(name, split=test_split, data_dir=data_dir,
                              download=False)
    except tfds.core.registered.DatasetNotFoundError:
      # Not in the TFDS catalog: a dataset the user prepared with a builder
      # of their own (e.g. Tiny ImageNet) is read from its directory.
      builder = _prepared_builder(name, data_dir)
      train = builder.as_data_source(split=train_split)
      test = builder.as_data_source(split=test_split)
  except DatasetError:
    raise
  except (NotImplementedError, AssertionError, FileNotFoundError,
          RuntimeError, ValueError, KeyError) as e:
    where = data_dir or '~/tensorflow_datasets'
    raise DatasetError(
        f'TFDS dataset {name!r} is not prepared in {where} (as array_record).'
        ' This machine reads prepared datasets only; prepare it once where '
        'there is network access:\n'
        '    pip install tensorflow tensorflow-datasets\n'
        f'    tfds build {name} --file_format=array_record --data_dir=DIR\n'
        'then pass --config.data_dir=DIR.\n'
        f'(TFDS said: {str(e).splitlines()[0]})') from None
  features = train.dataset_info.features
  image_shape = tuple(features['image'].shape)
  if name in _KNOWN_STATS:
    mean, std = _KNOWN_STATS[name]
  else:
    sample = np.stack([train[i]['image'] for i in range(min(len(train), 512))])
    mean = tuple(sample.mean(axis=(0, 1, 2)).tolist())
    std = tuple(np.maximum(sample.std(axis=(0, 1, 2)), 1.0).tolist())
  return Dataset(
      name=name, train=train, test=test,
      num_classes=features['label'].num_classes,
      image_shape=image_shape, mean=mean, std=std,
  )


def _class_balanced_subset(dataset: Dataset, size: int,
                           split_seed: int) -> Dataset:
  """`size // num_classes` training images of each class (see load_dataset)."""
  if not isinstance(dataset.train, _ArraySource):
    raise ConfigError(
        f'config.train_subset={size} needs a dataset held in memory '
        f'({DIGITS!r}, or {FASHION_MNIST!r} read from its IDX files), not the '
        f'TFDS dataset {dataset.name!r}; set it to 0.')
  num_classes = dataset.num_classes
  if size % num_classes:
    raise ConfigError(
        f'config.train_subset={size} is not a multiple of the {num_classes} '
        f'classes of {dataset.name!r} (the subset takes as many images of '
        f'each); use e.g. {max(size - size % num_classes, num_classes)}.')
  per_class = size // num_classes
  images, labels = dataset.train.images, dataset.train.labels
  counts = np.bincount(labels, minlength=num_classes)
  if per_class > counts.min():
    raise ConfigError(
        f'config.train_subset={size} takes {per_class} images of each class, '
        f'but class {counts.argmin()} of {dataset.name!r} has only '
        f'{counts.min()} training images; use at most '
        f'{counts.min() * num_classes}.')
  # A stream of its own: the digits split draws from the split seed itself.
  rng = np.random.default_rng([split_seed, 1])
  # Each class's permutation does not depend on `size`, so a larger subset
  # holds the smaller ones.
  chosen = np.sort(np.concatenate([
      rng.permutation(np.flatnonzero(labels == c))[:per_class]
      for c in range(num_classes)]))
  return _in_memory(dataset.name, (images[chosen], labels[chosen]),
                    (dataset.test.images, dataset.test.labels), num_classes)


def load_dataset(name: str, *, data_dir: str | None = None,
                 split_seed: int = 0, test_fraction: float = 0.2,
                 train_split: str = 'train', test_split: str = 'test',
                 train_subset: int = 0) -> Dataset:
  """Loads `digits`, `fashion_mnist` or a prepared TFDS dataset by name.

  Fashion-MNIST is read from its four IDX files in `data_dir` (Debian's
  dataset-fashion-mnist directory if None), or with TFDS where none of them
  is there and TFDS has it prepared.

  Args:
    name: 'digits', 'fashion_mnist' or a TFDS image-classification dataset.
    data_dir: where the dataset is (TFDS's default if None).
    split_seed: seed of the fixed digits train/test split and of the
      training subset.
    test_fraction: share of digits held out for testing.
    train_split: TFDS split to train on.
    test_split: TFDS split to evaluate on.
    train_subset: if not 0, train on this many images, the same number from
      each class (a multiple of the number of classes), drawn with
      `split_seed`; in-memory datasets only. The statistics are the subset's.

  Returns:
    The dataset.

  Example:
    >>> ds = load_dataset('digits')
    >>> len(ds.train), len(ds.test), ds.image_shape
    (1438, 359, (8, 8, 1))
    >>> len(load_dataset('digits', train_subset=100).train)
    100
  """
  if name == DIGITS:
    dataset = _digits(split_seed, test_fraction)
  elif name == FASHION_MNIST and not _fashion_mnist_in_tfds(data_dir):
    dataset = _fashion_mnist(data_dir)
  else:
    dataset = _tfds(name, data_dir, train_split, test_split)
  if train_subset:
    dataset = _class_balanced_subset(dataset, train_subset, split_seed)
  return dataset


def dataset_from_config(config) -> Dataset:
  """Loads the dataset a training config names (see train/configs)."""
  return load_dataset(
      config.dataset, data_dir=config.get('data_dir'),
      split_seed=config.get('split_seed', 0),
      train_split=config.get('train_split', 'train'),
      test_split=config.get('test_split', 'test'),
      train_subset=config.get('train_subset', 0))


def _record(example: dict[str, Any]) -> dict[str, np.ndarray]:
  return {'image': np.asarray(example['image'], np.uint8),
          'label': np.asarray(example['label'], np.int32)}


def _stack(records: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([r[k] for r in records]) for k in records[0]}


def steps_per_epoch(dataset: Dataset, global_batch_size: int) -> int:
  """Number of full global batches in one pass over the training split."""
  steps = len(dataset.train) // global_batch_size
  if steps == 0:
    raise DatasetError(
        f'batch_size {global_batch_size} is larger than the {len(dataset.train)}'
        f' training examples of {dataset.name!r}; use a smaller batch_size.')
  return steps


def train_batches(
    dataset: Dataset,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int,
    num_steps: int,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields this host's rows of global training batches `start_step..`.

  Each epoch is a fresh grain permutation of the training split (derived from
  `seed`); the last incomplete batch of an epoch is dropped. Every batch has
  'image' (uint8), 'label' (int32) and 'index', the rows' positions in the
  global batch, which key per-example augmentation on the device.

  Args:
    dataset: the dataset.
    global_batch_size: batch size over all hosts and devices.
    seed: shuffling seed.
    start_step: first step to read (0, or the step a run resumes from).
    num_steps: total number of steps of the run.
    process_index: this host's index.
    process_count: number of hosts; must divide `global_batch_size`.
    num_threads: threads reading examples ahead of the loop.

  Yields:
    Batches of `global_batch_size // process_count` rows.
  """
  if global_batch_size % process_count:
    raise DatasetError(
        f'batch_size {global_batch_size} is not divisible by the '
        f'{process_count} processes.')
  per_epoch = steps_per_epoch(dataset, global_batch_size)
  local = global_batch_size // process_count
  offset = process_index * local
  size = len(dataset.train)
  order = _order(size, seed)
  positions = np.arange(offset, offset + local, dtype=np.int32)

  def read(step: int) -> dict[str, np.ndarray]:
    epoch, within = divmod(step, per_epoch)
    first = epoch * size + within * global_batch_size + offset
    batch = _stack([_record(dataset.train[order[first + i]])
                    for i in range(local)])
    batch['index'] = positions
    return batch

  steps = grain.MapDataset.range(start_step, num_steps).map(read)
  yield from steps.to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=8))


def _order(size: int, seed: int) -> grain.MapDataset:
  """The training examples' order: a fresh grain permutation every epoch."""
  return grain.MapDataset.range(size).shuffle(seed=seed).repeat()


@functools.lru_cache(maxsize=256)
def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
  """The order in which `train_batches` reads epoch `epoch`'s examples.

  A permutation of the training split: rows `[step * B, (step + 1) * B)`
  are the examples of the epoch's batch `step` at global batch size B, and
  the tail that fills no batch is not read. Cached: paired runs of several
  methods read the same orders.

  Example:
    >>> order = epoch_order(10, seed=0, epoch=0)
    >>> sorted(order.tolist()) == list(range(10))
    True
  """
  order = _order(size, seed)
  return np.fromiter((order[epoch * size + i] for i in range(size)),
                     np.int32, size)


def eval_batches(dataset: Dataset, *, batch_size: int, process_index: int = 0,
                 process_count: int = 1,
                 split: str = 'test') -> Iterator[dict[str, np.ndarray]]:
  """Yields this host's rows of a split in fixed-size padded batches.

  The last batch is padded with copies of the first example and a 'mask' of
  zeros, so every example counts exactly once and shapes never change.

  Args:
    dataset: the dataset.
    batch_size: global evaluation batch size; divisible by `process_count`.
    process_index: this host's index.
    process_count: number of hosts.
    split: 'test', or 'train' for one pass over the training examples in
      their stored order (MLR-SNet's initial loss).

  Yields:
    Batches with 'image', 'label', 'mask' (1 for real rows, 0 for padding).
  """
  source = {'train': dataset.train, 'test': dataset.test}[split]
  local = batch_size // process_count
  size = len(source)
  for start in range(0, size, batch_size):
    rows = range(start + process_index * local,
                 start + (process_index + 1) * local)
    records = [_record(source[i if i < size else 0]) for i in rows]
    batch = _stack(records)
    batch['mask'] = np.array([i < size for i in rows], np.float32)
    yield batch


def as_arrays(source: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
  """Every example of a split, read in order: (uint8 images, int32 labels).

  Example:
    >>> images, labels = as_arrays(load_dataset('digits').test)
    >>> images.shape, images.dtype, labels.shape
    ((359, 8, 8, 1), dtype('uint8'), (359,))
  """
  records = [_record(source[i]) for i in range(len(source))]
  return (np.stack([r['image'] for r in records]),
          np.stack([r['label'] for r in records]))


def hold_out(dataset: Dataset, size: int,
             seed: int) -> tuple[Dataset, dict[str, np.ndarray]]:
  """Splits a class-balanced set of `size` examples off the training split.

  MLR-SNet's meta-training measures its meta loss on examples the model
  does not train on (1,000 of CIFAR's in the official code). Each class
  gives `size // num_classes` examples, chosen by numpy's generator seeded
  with `seed`: a fixed split, like the digits test split.

  Args:
    dataset: the dataset.
    size: how many examples to hold out, a positive multiple of the number
      of classes.
    seed: the split's seed.

  Returns:
    The dataset whose training split is the rest, in its stored order, and
    the held-out examples as {'image': uint8, 'label': int32} arrays.

  Raises:
    DatasetError: `size` is no positive multiple of the number of classes,
      or a class would have no training example left.

  Example:
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
  rng = np.random.default_rng(seed)
  held = []
  for label in range(classes):
    rows = np.flatnonzero(labels == label)
    if len(rows) <= size // classes:
      raise DatasetError(
          f'class {label} of {dataset.name!r} has {len(rows)} training '
          f'examples: holding out {size // classes} of each class leaves it '
          'none to train on; hold out fewer.')
    held.append(rng.choice(rows, size // classes, replace=False))
  held = np.sort(np.concatenate(held))
  rest = np.setdiff1d(np.arange(len(labels)), held)
  return (dataclasses.replace(dataset,
                              train=_ArraySource(images[rest], labels[rest])),
          {'image': images[held], 'label': labels[held]})
