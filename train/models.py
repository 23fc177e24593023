"""The paper's image classifiers as Flax Linen modules.

PLRS (arXiv 2407.07613) is evaluated on five networks: ResNet-110 (CIFAR-100),
WRN-28-10 and VGG-16 (CIFAR-10), DenseNet-40-12 (CIFAR-100) and ResNet-50
(Tiny ImageNet; the authors' code also runs the standard ResNet-50 on
ImageNet-1k). They are written here in Linen, as in the Flax ImageNet
example (google/flax, examples/imagenet/models.py), because under `jax.pmap`
Linen's `params` and `batch_stats` are plain pytrees that the training loop can
replicate, average and checkpoint without any module machinery.

Every model shares one calling convention::

  logits, updates = model.apply(variables, images, train=True,
                                mutable=['batch_stats'], rngs={'dropout': key})
  logits = model.apply(variables, images, train=False)

with `images` a float NHWC batch and `logits` of shape (batch, num_classes) in
float32. Every model has further attributes:

* `bn_axis_name`: the `pmap` axis over which BatchNorm averages its batch
  statistics (None: per-device statistics). The training loop sets it to
  'batch' so that N replicas of a batch of B/N images normalise exactly like
  one device with B images.
* `dtype`: the computation dtype (parameters stay float32).
* `conv`: the convolution module, `nn.Conv` by default, as in the Flax
  ImageNet example; `create_model(..., conv='im2col')` computes every
  convolution as im2col and one matrix product (train/im2col.py).
* `act`: the activation, ReLU by default (`create_model(..., act='gelu')`:
  GELU, whose derivative is continuous; tests/float_tolerance.py says why
  tests that compare two programs use it).

All BatchNorm layers use momentum 0.9 and epsilon 1e-5, PyTorch's defaults,
since the paper's numbers come from PyTorch. Convolutions are bias-free (each
feeds a BatchNorm, which has its own shift) and start from He-normal weights
with fan-out scaling, as torchvision initialises its ResNets. 3x3 convolutions
pad explicitly by one pixel on every side, like PyTorch's `padding=1`: with
stride 2, Flax's 'SAME' would pad only the bottom/right and sample different
pixels.

`create_model(name, num_classes)` builds a model from its name in `MODELS`.
"""

from collections.abc import Callable
import functools
import inspect
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from train import im2col

ModuleDef = Any

# He et al. (2015) initialisation with fan-out scaling, torchvision's choice
# for ResNets (kaiming_normal_(mode='fan_out', nonlinearity='relu')).
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _layers(module: nn.Module, train: bool):
  """The conv and BatchNorm constructors every model shares."""
  conv = functools.partial(
      module.conv, use_bias=False, dtype=module.dtype,
      kernel_init=conv_kernel_init)
  norm = functools.partial(
      nn.BatchNorm, use_running_average=not train, momentum=0.9,
      epsilon=1e-5, dtype=module.dtype, axis_name=module.bn_axis_name)
  return conv, norm


def _conv3x3(conv: ModuleDef, features: int, strides: int = 1, **kwargs):
  return conv(features, (3, 3), strides=(strides, strides),
              padding=((1, 1), (1, 1)), **kwargs)


def _conv1x1(conv: ModuleDef, features: int, strides: int = 1, **kwargs):
  return conv(features, (1, 1), strides=(strides, strides), padding='VALID',
              **kwargs)


def _head(module: nn.Module, x):
  """Global average pool and the classifier, returning float32 logits."""
  x = jnp.mean(x, axis=(1, 2))
  x = nn.Dense(module.num_classes, dtype=module.dtype, name='classifier')(x)
  return jnp.asarray(x, jnp.float32)


# --- CIFAR ResNet (He et al. 2016) -------------------------------------------


class BasicBlock(nn.Module):
  """A CIFAR ResNet basic block, conv-BN-ReLU-conv-BN plus an option-A shortcut.

  When the block halves the resolution and widens the channels, the shortcut
  is option A of He et al. (2016): the input subsampled with stride 2 and
  zero-padded in channels (half the new channels before, half after), with no
  parameters.

  Attributes:
    features: output channels.
    strides: 1, or 2 to halve the resolution.
    conv: the convolution constructor.
    act: the activation.
    norm: the BatchNorm constructor.
  """
  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]

  @nn.compact
  def __call__(self, x):
    y = _conv3x3(self.conv, self.features, self.strides)(x)
    y = self.act(self.norm()(y))
    y = _conv3x3(self.conv, self.features)(y)
    y = self.norm()(y)
    shortcut = x
    if self.strides != 1:
      shortcut = shortcut[:, ::self.strides, ::self.strides, :]
    extra = self.features - x.shape[-1]
    if extra:
      shortcut = jnp.pad(
          shortcut, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return self.act(y + shortcut)


class CifarResNet(nn.Module):
  """The CIFAR ResNet of He et al. (2016), Section 4.2, depth 6n + 2.

  A 3x3 conv with 16 channels, three stages of n basic blocks with 16, 32 and
  64 channels (the last two start with stride 2), global average pooling and
  a linear classifier. Shortcuts are option A (parameter-free identity with
  subsampling and zero-padded channels), the variant the paper uses on
  CIFAR-10: ResNet-20 has 269,722 parameters (0.27M in the paper) and
  ResNet-110 1,727,962 (1.7M), both with 10 classes. Depth 8 (n = 1) gives a
  tiny model for tests.

  Attributes:
    depth: 6n + 2 for n >= 1 (20, 32, 44, 56, 110, ...).
    num_classes: number of logits.
    bn_axis_name: pmap axis for cross-replica BatchNorm statistics, or None.
    dtype: computation dtype.
    conv: the convolution module (`nn.Conv`, or train/im2col.py's).
    act: the activation (ReLU; `create_model(..., act='gelu')` for a
      smooth one).

  Example:

  >>> import jax
  >>> model = CifarResNet(depth=8, num_classes=10)
  >>> x = jnp.zeros((1, 8, 8, 1))
  >>> variables = model.init(jax.random.key(0), x, train=False)
  >>> model.apply(variables, x, train=False).shape
  (1, 10)
  """
  depth: int
  num_classes: int
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  act: Callable[[jax.Array], jax.Array] = nn.relu

  def __post_init__(self):
    if (not isinstance(self.depth, int) or self.depth < 8
        or (self.depth - 2) % 6):
      raise ValueError(
          f'CifarResNet: depth must be 6n + 2 with n >= 1 (8, 20, 32, 44, 56, '
          f'110, ...), got {self.depth!r}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv, norm = _layers(self, train)
    blocks_per_stage = (self.depth - 2) // 6
    x = jnp.asarray(x, self.dtype)
    x = _conv3x3(conv, 16, name='stem_conv')(x)
    x = self.act(norm(name='stem_bn')(x))
    for stage, features in enumerate((16, 32, 64)):
      for block in range(blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(features, strides, conv=conv, norm=norm,
                       act=self.act, name=f'stage{stage + 1}_block{block}')(x)
    return _head(self, x)


# --- Wide ResNet (Zagoruyko & Komodakis 2016) --------------------------------


class WideBasicBlock(nn.Module):
  """A pre-activation wide block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3.

  When the shape changes, the shortcut is a 1x1 convolution (with the block's
  stride) of the pre-activated input; otherwise it is the identity.

  Attributes:
    features: output channels.
    strides: 1, or 2 to halve the resolution.
    dropout_rate: dropout between the two convolutions.
    train: whether dropout is active.
    conv: the convolution constructor.
    act: the activation.
    norm: the BatchNorm constructor.
  """
  features: int
  strides: int
  dropout_rate: float
  train: bool
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]

  @nn.compact
  def __call__(self, x):
    preact = self.act(self.norm()(x))
    y = _conv3x3(self.conv, self.features, self.strides)(preact)
    y = self.act(self.norm()(y))
    y = nn.Dropout(self.dropout_rate, deterministic=not self.train)(y)
    y = _conv3x3(self.conv, self.features)(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = _conv1x1(self.conv, self.features, self.strides,
                   name='shortcut')(preact)
    return x + y


class WideResNet(nn.Module):
  """WRN-d-k of Zagoruyko & Komodakis (2016), pre-activation basic blocks.

  A 3x3 conv with 16 channels, three groups of (d - 4) / 6 wide blocks with
  16k, 32k and 64k channels (the last two start with stride 2), BN-ReLU,
  global average pooling and a linear classifier. WRN-28-10 has 36,479,194
  parameters with 10 classes (36.5M in the paper). With `dropout_rate > 0`
  training needs a 'dropout' rng.

  Attributes:
    num_classes: number of logits.
    depth: d, with (d - 4) divisible by 6 (16, 22, 28, 40, ...).
    widen_factor: k.
    dropout_rate: dropout between the two convolutions of a block.
    bn_axis_name: pmap axis for cross-replica BatchNorm statistics, or None.
    dtype: computation dtype.
    conv: the convolution module (`nn.Conv`, or train/im2col.py's).
    act: the activation (ReLU; `create_model(..., act='gelu')` for a
      smooth one).

  Example (shapes only, through `jax.eval_shape`):

  >>> import jax
  >>> model = WideResNet(num_classes=10, depth=28, widen_factor=10)
  >>> x = jnp.zeros((1, 32, 32, 3))
  >>> variables = jax.eval_shape(
  ...     lambda: model.init(jax.random.key(0), x, train=False))
  >>> jax.eval_shape(
  ...     lambda v: model.apply(v, x, train=False), variables).shape
  (1, 10)
  """
  num_classes: int
  depth: int = 28
  widen_factor: int = 10
  dropout_rate: float = 0.0
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  act: Callable[[jax.Array], jax.Array] = nn.relu

  def __post_init__(self):
    if (not isinstance(self.depth, int) or self.depth < 10
        or (self.depth - 4) % 6):
      raise ValueError(
          f'WideResNet: depth must satisfy (depth - 4) % 6 == 0 with depth '
          f'>= 10 (10, 16, 22, 28, 40, ...), got {self.depth!r}.')
    if not isinstance(self.widen_factor, int) or self.widen_factor < 1:
      raise ValueError(
          f'WideResNet: widen_factor must be a positive int, got '
          f'{self.widen_factor!r}.')
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(
          f'WideResNet: dropout_rate must be in [0, 1), got '
          f'{self.dropout_rate!r}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv, norm = _layers(self, train)
    blocks_per_group = (self.depth - 4) // 6
    x = jnp.asarray(x, self.dtype)
    x = _conv3x3(conv, 16, name='stem_conv')(x)
    for group, width in enumerate((16, 32, 64)):
      for block in range(blocks_per_group):
        strides = 2 if group > 0 and block == 0 else 1
        x = WideBasicBlock(
            width * self.widen_factor, strides, self.dropout_rate, train,
            conv=conv, norm=norm, act=self.act,
            name=f'group{group + 1}_block{block}')(x)
    x = self.act(norm(name='final_bn')(x))
    return _head(self, x)


# --- VGG-16 with BatchNorm (CIFAR variant) -----------------------------------

_VGG16_LAYERS = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M',
                 512, 512, 512, 'M', 512, 512, 512, 'M')


class VGG16(nn.Module):
  """VGG-16 with BatchNorm, in the usual CIFAR variant.

  The 13 convolutions of Simonyan & Zisserman's configuration D, each
  conv3x3-BN-ReLU, with 2x2 max-pooling after each of the five groups; on a
  32x32 input this leaves a 1x1x512 feature, which is flattened into a single
  linear classifier. This is the CIFAR variant of e.g. kuangliu/pytorch-cifar
  (no 4096-wide fully connected layers). Convolutions here are bias-free, so
  the model has 14,724,042 parameters with 10 classes (pytorch-cifar's, with
  conv biases, has 4,224 more: 14,728,266). Inputs must be 32x32 (or the
  flattened feature, and with it the classifier, changes size).

  Attributes:
    num_classes: number of logits.
    bn_axis_name: pmap axis for cross-replica BatchNorm statistics, or None.
    dtype: computation dtype.
    conv: the convolution module (`nn.Conv`, or train/im2col.py's).
    act: the activation (ReLU; `create_model(..., act='gelu')` for a
      smooth one).

  Example (shapes only, through `jax.eval_shape`):

  >>> import jax
  >>> model = VGG16(num_classes=10)
  >>> x = jnp.zeros((1, 32, 32, 3))
  >>> variables = jax.eval_shape(
  ...     lambda: model.init(jax.random.key(0), x, train=False))
  >>> jax.eval_shape(
  ...     lambda v: model.apply(v, x, train=False), variables).shape
  (1, 10)
  """
  num_classes: int
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  act: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv, norm = _layers(self, train)
    x = jnp.asarray(x, self.dtype)
    index = 0
    for layer in _VGG16_LAYERS:
      if layer == 'M':
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      else:
        x = _conv3x3(conv, layer, name=f'conv{index}')(x)
        x = self.act(norm(name=f'bn{index}')(x))
        index += 1
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)
    return jnp.asarray(x, jnp.float32)


# --- DenseNet (Huang et al. 2017) --------------------------------------------


class DenseNet(nn.Module):
  """DenseNet of Huang et al. (2017) for CIFAR, without bottleneck/compression.

  A 3x3 conv with `initial_features` channels (16, the paper's choice for
  DenseNets that are not -BC), three dense blocks of (depth - 4) / 3 layers
  BN-ReLU-conv3x3 with `growth_rate` channels each, concatenated to their
  input; between blocks a transition BN-ReLU-conv1x1 (same channels)-2x2
  average pool; finally BN-ReLU, global average pooling and a linear
  classifier. DenseNet-40-12 has 1,019,722 parameters with 10 classes (1.0M in
  the paper) and 1,060,132 with 100. Dropout after each conv (the paper used
  0.2 without data augmentation) needs a 'dropout' rng when training.

  Attributes:
    num_classes: number of logits.
    depth: (depth - 4) divisible by 3 (40, 100, ...).
    growth_rate: channels added by each layer, k.
    initial_features: channels of the first convolution.
    dropout_rate: dropout after each conv in blocks and transitions.
    bn_axis_name: pmap axis for cross-replica BatchNorm statistics, or None.
    dtype: computation dtype.
    conv: the convolution module (`nn.Conv`, or train/im2col.py's).
    act: the activation (ReLU; `create_model(..., act='gelu')` for a
      smooth one).

  Example (shapes only, through `jax.eval_shape`):

  >>> import jax
  >>> model = DenseNet(num_classes=100, depth=40, growth_rate=12)
  >>> x = jnp.zeros((1, 32, 32, 3))
  >>> variables = jax.eval_shape(
  ...     lambda: model.init(jax.random.key(0), x, train=False))
  >>> jax.eval_shape(
  ...     lambda v: model.apply(v, x, train=False), variables).shape
  (1, 100)
  """
  num_classes: int
  depth: int = 40
  growth_rate: int = 12
  initial_features: int = 16
  dropout_rate: float = 0.0
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  act: Callable[[jax.Array], jax.Array] = nn.relu

  def __post_init__(self):
    if (not isinstance(self.depth, int) or self.depth < 7
        or (self.depth - 4) % 3):
      raise ValueError(
          f'DenseNet: depth must satisfy (depth - 4) % 3 == 0 with depth >= 7 '
          f'(40, 100, ...), got {self.depth!r}.')
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(
          f'DenseNet: dropout_rate must be in [0, 1), got '
          f'{self.dropout_rate!r}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv, norm = _layers(self, train)
    dropout = functools.partial(
        nn.Dropout, self.dropout_rate, deterministic=not train)
    layers_per_block = (self.depth - 4) // 3
    x = jnp.asarray(x, self.dtype)
    x = _conv3x3(conv, self.initial_features, name='stem_conv')(x)
    for block in range(3):
      for layer in range(layers_per_block):
        name = f'block{block + 1}_layer{layer}'
        y = self.act(norm(name=f'{name}_bn')(x))
        y = _conv3x3(conv, self.growth_rate, name=f'{name}_conv')(y)
        y = dropout()(y)
        x = jnp.concatenate([x, y], axis=-1)
      if block < 2:
        name = f'transition{block + 1}'
        x = self.act(norm(name=f'{name}_bn')(x))
        x = _conv1x1(conv, x.shape[-1], name=f'{name}_conv')(x)
        x = dropout()(x)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = self.act(norm(name='final_bn')(x))
    return _head(self, x)


# --- bottleneck ResNets ------------------------------------------------------


_RESNET50_STAGES = (3, 4, 6, 3)


class BottleneckBlock(nn.Module):
  """A ResNet bottleneck block, 1x1-3x3-1x1 with 4x expansion.

  The stride sits on the 3x3 convolution (torchvision's "ResNet v1.5"); the
  shortcut is a 1x1 convolution and BatchNorm (projection) when the shape
  changes, the identity otherwise.

  Attributes:
    features: width of the 1x1 and 3x3 convolutions (output is 4x this).
    strides: 1, or 2 to halve the resolution.
    conv: the convolution constructor.
    act: the activation.
    norm: the BatchNorm constructor.
  """
  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]

  @nn.compact
  def __call__(self, x):
    y = _conv1x1(self.conv, self.features)(x)
    y = self.act(self.norm()(y))
    y = _conv3x3(self.conv, self.features, self.strides)(y)
    y = self.act(self.norm()(y))
    y = _conv1x1(self.conv, 4 * self.features)(y)
    y = self.norm()(y)
    if self.strides != 1 or x.shape[-1] != 4 * self.features:
      x = _conv1x1(self.conv, 4 * self.features, self.strides,
                   name='shortcut_conv')(x)
      x = self.norm(name='shortcut_bn')(x)
    return self.act(x + y)


class ResNet(nn.Module):
  """A bottleneck ResNet (He et al. 2016), stage sizes and stem as attributes.

  Stages of ``stage_sizes`` bottleneck blocks (widths 64, 128, 256, 512,
  outputs 4x that; every stage after the first starts with stride 2) with
  projection shortcuts, global average pooling and a linear classifier, as in
  the Flax ImageNet example. Two stems:

  * ``imagenet_stem=True``: the standard one for 224x224 images, a 7x7
    stride-2 convolution (padding 3) with 64 channels, BatchNorm, ReLU and a
    3x3 stride-2 max-pool (padding 1), a 4x reduction: torchvision's
    ``resnet50()``, which the authors' ImageNet-1k trainer builds.
  * ``imagenet_stem=False``: one 3x3 stride-1 convolution with 64 channels and
    no max-pool, the usual adaptation to small images, so that a 64x64 Tiny
    ImageNet image reaches the last stage at 8x8.

  Attributes:
    num_classes: number of logits.
    stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
    imagenet_stem: the 7x7 stem with max-pool, or the 3x3 one without.
    bn_axis_name: pmap axis for cross-replica BatchNorm statistics, or None.
    dtype: computation dtype.
    conv: the convolution module (`nn.Conv`, or train/im2col.py's).
    act: the activation (ReLU; `create_model(..., act='gelu')` for a
      smooth one).

  Example (shapes only, through `jax.eval_shape`):

  >>> import jax
  >>> model = ResNet50ImageNet(num_classes=1000)
  >>> x = jnp.zeros((1, 224, 224, 3))
  >>> variables = jax.eval_shape(
  ...     lambda: model.init(jax.random.key(0), x, train=False))
  >>> jax.eval_shape(
  ...     lambda v: model.apply(v, x, train=False), variables).shape
  (1, 1000)
  """
  num_classes: int
  stage_sizes: tuple[int, ...] = _RESNET50_STAGES
  imagenet_stem: bool = False
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  act: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv, norm = _layers(self, train)
    x = jnp.asarray(x, self.dtype)
    if self.imagenet_stem:
      x = conv(64, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)),
               name='stem_conv')(x)
      x = self.act(norm(name='stem_bn')(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = _conv3x3(conv, 64, name='stem_conv')(x)
      x = self.act(norm(name='stem_bn')(x))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BottleneckBlock(64 * 2**stage, strides, conv=conv, norm=norm,
                            act=self.act,
                            name=f'stage{stage + 1}_block{block}')(x)
    return _head(self, x)


# ResNet-50 adapted to 64x64 Tiny ImageNet: 23,910,152 parameters with 200
# classes (torchvision's 25,557,032 less its 1000-way classifier and 7x7 stem,
# plus a 200-way classifier and the 3x3 stem).
ResNet50 = functools.partial(ResNet, stage_sizes=_RESNET50_STAGES)
# The standard ResNet-50 for 224x224 ImageNet: torchvision's resnet50(),
# 25,557,032 parameters with 1000 classes.
ResNet50ImageNet = functools.partial(ResNet, stage_sizes=_RESNET50_STAGES,
                                     imagenet_stem=True)


# --- MLP ------------------------------------------------------------------------


class MLP(nn.Module):
  """A multilayer perceptron on flattened images, ReLU between layers.

  The benchmarks' small model (784-256-256-10 on 28x28 images), with the
  calling convention of the others; it has no BatchNorm and no convolution,
  so `bn_axis_name` and `conv` change nothing.

  Attributes:
    num_classes: number of logits.
    hidden: widths of the hidden layers.
    bn_axis_name: unused (no BatchNorm).
    dtype: computation dtype.
    conv: unused (no convolution).
    act: the activation.

  Example:

  >>> import jax
  >>> model = MLP(num_classes=10)
  >>> x = jnp.zeros((2, 28, 28, 1))
  >>> variables = model.init(jax.random.key(0), x, train=False)
  >>> model.apply(variables, x, train=False).shape
  (2, 10)
  """
  num_classes: int
  hidden: tuple[int, ...] = (256, 256)
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  act: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train  # Nothing behaves differently in training.
    x = jnp.asarray(x, self.dtype).reshape(x.shape[0], -1)
    for width in self.hidden:
      x = self.act(nn.Dense(width, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype,
                    name='classifier')(x)


# --- registry ----------------------------------------------------------------

# The activations a config can name (`model_kwargs={'act': NAME}`).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu, 'gelu': nn.gelu}

MODELS: dict[str, Callable[..., nn.Module]] = {
    'resnet8': functools.partial(CifarResNet, depth=8),
    'resnet20': functools.partial(CifarResNet, depth=20),
    'resnet32': functools.partial(CifarResNet, depth=32),
    'resnet44': functools.partial(CifarResNet, depth=44),
    'resnet56': functools.partial(CifarResNet, depth=56),
    'resnet110': functools.partial(CifarResNet, depth=110),
    'wrn28_10': functools.partial(WideResNet, depth=28, widen_factor=10),
    'vgg16': VGG16,
    'densenet40_12': functools.partial(DenseNet, depth=40, growth_rate=12),
    'resnet50': ResNet50,
    'resnet50_imagenet': ResNet50ImageNet,
    'mlp': MLP,
}


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """Builds the model registered in `MODELS` under `name`.

  Args:
    name: a key of `MODELS`, e.g. 'resnet110' or 'wrn28_10'.
    num_classes: number of logits.
    **kwargs: further attributes of the model class, e.g. `bn_axis_name`,
      `dtype`, `conv` (a module, or a name of `im2col.CONVS`), `act` (a
      function, or a name of `ACTIVATIONS`), or `dropout_rate` for
      'wrn28_10'. The architecture that the name fixes (depth, widen factor,
      growth rate) cannot be overridden.

  Returns:
    An unbound Flax Linen module.

  Raises:
    ValueError: for an unknown name.
    TypeError: for a keyword argument the model does not take.

  Example:

  >>> model = create_model('resnet110', num_classes=100, bn_axis_name='batch')
  >>> type(model).__name__, model.depth, model.num_classes
  ('CifarResNet', 110, 100)
  """
  if name not in MODELS:
    raise ValueError(
        f'create_model: unknown model {name!r}; known models are '
        f'{", ".join(sorted(MODELS))}.')
  for field, named in (('conv', im2col.CONVS), ('act', ACTIVATIONS)):
    if isinstance(kwargs.get(field), str):
      if kwargs[field] not in named:
        raise ValueError(
            f'create_model: unknown {field} {kwargs[field]!r}; the choices '
            f'are {", ".join(named)}.')
      kwargs[field] = named[kwargs[field]]
  factory = MODELS[name]
  fixed = set(getattr(factory, 'keywords', {}))
  cls = getattr(factory, 'func', factory)
  accepted = set(inspect.signature(cls).parameters) - {'parent'}
  accepted -= fixed | {'num_classes'}
  unexpected = sorted(set(kwargs) - accepted)
  if unexpected:
    raise TypeError(
        f'create_model: model {name!r} ({cls.__name__}) does not take '
        f'{", ".join(unexpected)}; it takes {", ".join(sorted(accepted))}.')
  return factory(num_classes=num_classes, **kwargs)
