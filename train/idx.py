"""IDX files (MNIST's format): a big-endian magic number `0x0000TTNN` (TT the
type, NN the dimensions), NN 4-byte sizes, then C-order data; maybe gzipped."""

import gzip
import os
import pathlib
import zlib

import numpy as np

IMAGES = 2051  # uint8, 3 dimensions: count, rows, columns
LABELS = 2049  # uint8, 1 dimension
_KINDS = {IMAGES: 'uint8 images', LABELS: 'uint8 labels'}


class IdxError(ValueError):
  """The bytes are not the IDX file expected: what is wrong with them."""


def parse(data: bytes, magic: int) -> np.ndarray:
  """The read-only uint8 array, a view of `data`, that IDX bytes hold.

  >>> data = np.array([IMAGES, 2, 1, 3], '>u4').tobytes() + bytes(range(6))
  >>> parse(data, IMAGES).tolist()
  [[[0, 1, 2]], [[3, 4, 5]]]
  >>> parse(data, LABELS)
  Traceback (most recent call last):
  ...
  train.idx.IdxError: has magic number 2051, not 2049 (uint8 labels)
  """
  ndim = magic & 0xff
  header = 4 * (1 + ndim)
  if len(data) < header:
    raise IdxError(f'is {len(data)} bytes long, too short for the '
                   f'{header}-byte header of {_KINDS[magic]}')
  if (found := int.from_bytes(data[:4], 'big')) != magic:
    raise IdxError(f'has magic number {found}, not {magic} ({_KINDS[magic]})')
  shape = tuple(np.frombuffer(data, '>u4', ndim, 4).tolist())
  expected, size = int(np.prod(shape)), len(data) - header
  if size != expected:
    problem = 'is truncated' if size < expected else 'has trailing bytes'
    raise IdxError(f'{problem}: its header says {"x".join(map(str, shape))}, '
                   f'{expected} bytes of data, but {size} follow')
  return np.frombuffer(data, np.uint8, expected, header).reshape(shape)


def read(path: str | os.PathLike[str], magic: int) -> np.ndarray:
  """The array in the IDX file at `path`, gzipped or not (see `parse`)."""
  data = pathlib.Path(path).read_bytes()
  try:
    if data.startswith(b'\x1f\x8b'):  # gzip's magic number
      data = gzip.decompress(data)
    return parse(data, magic)
  except (EOFError, zlib.error, gzip.BadGzipFile) as e:
    raise IdxError(f'{path} is a damaged gzip file ({e})') from None
  except IdxError as e:
    raise IdxError(f'{path} {e}') from None
