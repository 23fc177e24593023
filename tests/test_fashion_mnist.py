"""Fashion-MNIST from IDX files, and class-balanced training subsets.

The tests write small IDX files of their own with numpy: they need neither
Debian's dataset-fashion-mnist nor a network.
"""

import gzip
import json
import pathlib

import numpy as np
import pytest

from runs import small_config
from train import config_validation
from train import errors
from train import input_pipeline

NAMES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
         'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
SIZES = {'train': 100, 'test': 20}


def idx_bytes(magic: int, array: np.ndarray) -> bytes:
  """The IDX encoding: big-endian magic and sizes, then the uint8 data."""
  header = np.array([magic, *array.shape], '>u4').tobytes()
  return header + array.astype(np.uint8).tobytes()


def write(path: pathlib.Path, data: bytes, gzipped: bool) -> pathlib.Path:
  path = path.with_name(path.name + '.gz') if gzipped else path
  path.write_bytes(gzip.compress(data) if gzipped else data)
  return path


def write_fashion_mnist(directory: pathlib.Path, gzipped: bool = True):
  """Random 28x28 images, 10 (train) and 2 (test) of each class, as IDX."""
  rng = np.random.default_rng(0)
  arrays = {}
  for split, size in SIZES.items():
    images = rng.integers(0, 256, (size, 28, 28), np.uint8)
    labels = rng.permutation(np.arange(size) % 10).astype(np.uint8)
    images_name, labels_name = NAMES[split]
    write(directory / images_name, idx_bytes(2051, images), gzipped)
    write(directory / labels_name, idx_bytes(2049, labels), gzipped)
    arrays[split] = images, labels
  return arrays


def as_arrays(source):
  records = [source[i] for i in range(len(source))]
  return (np.stack([r['image'] for r in records]),
          np.stack([r['label'] for r in records]))


@pytest.mark.parametrize('gzipped', [True, False])
def test_loads_the_images_and_labels_written(tmp_path, gzipped):
  arrays = write_fashion_mnist(tmp_path, gzipped)
  dataset = input_pipeline.load_dataset('fashion_mnist', data_dir=tmp_path)
  assert dataset.name == 'fashion_mnist' and dataset.num_classes == 10
  assert dataset.image_shape == (28, 28, 1)
  for split, source in (('train', dataset.train), ('test', dataset.test)):
    images, labels = as_arrays(source)
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    np.testing.assert_array_equal(images, arrays[split][0][..., None])
    np.testing.assert_array_equal(labels, arrays[split][1])
  pixels = arrays['train'][0].astype(np.float64)
  np.testing.assert_allclose(dataset.mean, [pixels.mean()], rtol=1e-12)
  np.testing.assert_allclose(dataset.std, [pixels.std()], rtol=1e-12)


def test_plain_and_gzipped_files_mix(tmp_path):
  arrays = write_fashion_mnist(tmp_path)
  # One file uncompressed; another gzipped under the plain name.
  images = tmp_path / 'train-images-idx3-ubyte'
  images.with_name(images.name + '.gz').unlink()
  write(images, idx_bytes(2051, arrays['train'][0]), gzipped=False)
  labels = tmp_path / 't10k-labels-idx1-ubyte'
  labels.with_name(labels.name + '.gz').rename(labels)
  dataset = input_pipeline.load_dataset('fashion_mnist', data_dir=tmp_path)
  np.testing.assert_array_equal(as_arrays(dataset.train)[0][..., 0],
                                arrays['train'][0])
  np.testing.assert_array_equal(as_arrays(dataset.test)[1], arrays['test'][1])


def rewrite(directory, name, data, gzipped):
  write(directory / name, data, gzipped)


def _wrong_magic(directory, arrays, gzipped):
  rewrite(directory, 'train-labels-idx1-ubyte',
          idx_bytes(2051, arrays['train'][1]), gzipped)


def _truncated(directory, arrays, gzipped):
  data = idx_bytes(2051, arrays['test'][0])
  if gzipped:  # a gzip stream cut short
    path = directory / 't10k-images-idx3-ubyte.gz'
    path.write_bytes(gzip.compress(data)[:-100])
  else:
    rewrite(directory, 't10k-images-idx3-ubyte', data[:-100], gzipped)


def _count_mismatch(directory, arrays, gzipped):
  rewrite(directory, 't10k-labels-idx1-ubyte',
          idx_bytes(2049, arrays['test'][1][:-1]), gzipped)


def _missing(directory, arrays, gzipped):
  del arrays
  (directory / ('t10k-images-idx3-ubyte' + '.gz' * gzipped)).unlink()


def _label_out_of_range(directory, arrays, gzipped):
  labels = arrays['train'][1].copy()
  labels[7] = 10
  rewrite(directory, 'train-labels-idx1-ubyte', idx_bytes(2049, labels),
          gzipped)


def _not_28x28(directory, arrays, gzipped):
  rewrite(directory, 'train-images-idx3-ubyte',
          idx_bytes(2051, arrays['train'][0][:, :, :27]), gzipped)


def _trailing_bytes(directory, arrays, gzipped):
  rewrite(directory, 'train-labels-idx1-ubyte',
          idx_bytes(2049, arrays['train'][1]) + b'\0', gzipped)


@pytest.mark.parametrize('gzipped', [True, False])
@pytest.mark.parametrize('damage,pattern', [
    (_wrong_magic, r'train-labels-idx1-ubyte(\.gz)? has magic number 2051, '
                   r'not 2049'),
    (_truncated, r't10k-images-idx3-ubyte(\.gz)? (is truncated|is a damaged '
                 r'gzip file)'),
    (_count_mismatch, r't10k-labels-idx1-ubyte(\.gz)? holds 19 labels but '
                      r'\S*t10k-images-idx3-ubyte(\.gz)? 20 images'),
    (_missing, r't10k-images-idx3-ubyte\.gz \(or t10k-images-idx3-ubyte\) '
               'is missing'),
    (_label_out_of_range, r'train-labels-idx1-ubyte(\.gz)? holds label 10 at '
                          'position 7'),
    (_not_28x28, r'train-images-idx3-ubyte(\.gz)? holds 28x27 images'),
    (_trailing_bytes, r'train-labels-idx1-ubyte(\.gz)? has trailing bytes'),
])
def test_damaged_files_are_named_with_what_to_do(tmp_path, gzipped, damage,
                                                  pattern):
  arrays = write_fashion_mnist(tmp_path, gzipped)
  damage(tmp_path, arrays, gzipped)
  with pytest.raises(errors.DatasetError, match=pattern) as raised:
    input_pipeline.load_dataset('fashion_mnist', data_dir=tmp_path)
  message = str(raised.value)
  assert str(tmp_path) in message and '\n' not in message
  assert 'apt-get install dataset-fashion-mnist' in message
  assert '--config.data_dir=DIR' in message


def test_no_files_says_what_to_install(tmp_path):
  with pytest.raises(errors.DatasetError,
                     match=f'none of its four IDX files is in {tmp_path}.*'
                           'apt-get install dataset-fashion-mnist'):
    input_pipeline.load_dataset('fashion_mnist', data_dir=tmp_path)


def test_without_idx_files_a_tfds_copy_is_read(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # A version directory marks the dataset as prepared; mock_data supplies it.
  version = tmp_path / 'fashion_mnist' / '3.0.1'
  version.mkdir(parents=True)
  (version / 'dataset_info.json').write_text(json.dumps({}))
  with tfds.testing.mock_data(num_examples=20):
    dataset = input_pipeline.load_dataset('fashion_mnist', data_dir=tmp_path)
    assert dataset.image_shape == (28, 28, 1) and len(dataset.train) == 20
    with pytest.raises(errors.ConfigError,
                       match='train_subset=10 needs a dataset held in memory'):
      input_pipeline.load_dataset('fashion_mnist', data_dir=tmp_path,
                                  train_subset=10)


def subset(directory, size, split_seed, seed=0):
  config = small_config(dataset='fashion_mnist', data_dir=str(directory),
                        train_subset=size, split_seed=split_seed, seed=seed)
  return input_pipeline.dataset_from_config(config)


def rows(images, labels):
  return {(image.tobytes(), int(label)) for image, label in zip(images, labels)}


def test_train_subset_is_class_balanced_and_fixed_by_the_split_seed(tmp_path):
  arrays = write_fashion_mnist(tmp_path)
  written = rows(arrays['train'][0][..., None], arrays['train'][1])
  dataset = subset(tmp_path, 50, split_seed=0)
  images, labels = as_arrays(dataset.train)
  assert len(labels) == 50
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), [5] * 10)
  chosen = rows(images, labels)
  assert len(chosen) == 50 and chosen <= written
  pixels = images.astype(np.float64)
  np.testing.assert_allclose(dataset.mean, [pixels.mean()], rtol=1e-12)
  np.testing.assert_allclose(dataset.std, [pixels.std()], rtol=1e-12)
  # The test split is untouched.
  np.testing.assert_array_equal(as_arrays(dataset.test)[1], arrays['test'][1])
  # Fixed by the split seed whatever the run's seed; another split seed draws
  # another subset; a smaller subset is part of a larger one.
  assert rows(*as_arrays(subset(tmp_path, 50, 0, seed=7).train)) == chosen
  assert rows(*as_arrays(subset(tmp_path, 50, split_seed=1).train)) != chosen
  assert rows(*as_arrays(subset(tmp_path, 20, split_seed=0).train)) < chosen


def test_train_subset_of_digits():
  full = input_pipeline.load_dataset('digits')
  dataset = input_pipeline.load_dataset('digits', train_subset=100)
  images, labels = as_arrays(dataset.train)
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), [10] * 10)
  assert rows(images, labels) <= rows(*as_arrays(full.train))
  assert len(dataset.test) == len(full.test)


@pytest.mark.parametrize('size,pattern', [
    (55, r'train_subset=55 is not a multiple of the 10 classes.*use e\.g\. 50'),
    (110, r'train_subset=110 takes 11 images of each class, but class \d of '
          r"'fashion_mnist' has only 10 training images; use at most 100"),
])
def test_bad_train_subset_is_refused_in_one_line(tmp_path, size, pattern):
  write_fashion_mnist(tmp_path)
  with pytest.raises(errors.ConfigError, match=pattern) as raised:
    subset(tmp_path, size, split_seed=0)
  assert '\n' not in str(raised.value)


def test_negative_train_subset_is_refused_before_loading():
  with pytest.raises(errors.ConfigError,
                     match=r'config\.train_subset=-1 must be an integer >= 0'):
    config_validation.validate(small_config(train_subset=-1))
