"""The paper's image classifiers (arXiv 2407.07613) as Flax Linen modules, with
PyTorch's BatchNorm and padding, whose numbers the paper reports."""

from collections.abc import Callable
import functools
import inspect
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from train import im2col

ModuleDef = Any
# torchvision's ResNet init: kaiming_normal_(mode='fan_out', 'relu').
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _stages(x, block, sizes, width, name, *args):
  for stage, num_blocks in enumerate(sizes):
    for i in range(num_blocks):  # Later stages start by halving the size.
      x = block(width * 2**stage, 2 if stage and not i else 1, *args,
                name=f'{name}{stage + 1}_block{i}')(x)
  return x


# The running averages' decay: PyTorch's momentum 0.1.
BN_MOMENTUM = 0.9

class _Model(nn.Module, kw_only=True):
  """Float NHWC in, float32 logits out; `bn_axis_name` is the pmap axis that
  BatchNorm averages over. Checks depth, widen_factor and dropout_rate."""
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv
  act: Callable[[jax.Array], jax.Array] = nn.relu
  _DEPTH = None  # (minimum, offset, divisor, rule) of a valid depth.

  def __post_init__(self):
    low, offset, divisor, depth_rule = self._DEPTH or (None,) * 4
    for field, ok, rule in (
        ('depth', lambda d: isinstance(d, int) and d >= low
         and not (d - offset) % divisor, depth_rule),
        ('widen_factor', lambda k: isinstance(k, int) and k >= 1,
         'be a positive int'),
        ('dropout_rate', lambda p: 0.0 <= p < 1.0, 'be in [0, 1)')):
      if hasattr(self, field) and not ok(getattr(self, field)):
        raise ValueError(f'{type(self).__name__}: {field} must {rule}, got '
                         f'{getattr(self, field)!r}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = True):
    """`_body` with PyTorch-like bias-free conv and BatchNorm, then the head."""
    def conv(features: int, size=3, strides=1, **kwargs):
      pad = (size // 2, size // 2)
      return self.conv(features, (size, size), strides=(strides, strides),
                       padding=(pad, pad), use_bias=False, dtype=self.dtype,
                       kernel_init=conv_kernel_init, **kwargs)
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=BN_MOMENTUM,
        epsilon=1e-5, dtype=self.dtype, axis_name=self.bn_axis_name)
    x = self._body(jnp.asarray(x, self.dtype), conv, norm, train)
    x = jnp.mean(x, axis=(1, 2)) if x.ndim == 4 else x
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)
    return jnp.asarray(x, jnp.float32)


class _Block(nn.Module):
  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[jax.Array], jax.Array]


class BasicBlock(_Block):
  """A CIFAR ResNet block with an option-A (subsample, zero-pad) shortcut."""
  @nn.compact
  def __call__(self, x):
    y = self.act(self.norm()(self.conv(self.features, strides=self.strides)(x)))
    y = self.norm()(self.conv(self.features)(y))
    extra = self.features - x.shape[-1]  # Zero channels, half on each side.
    shortcut = jnp.pad(x[:, ::self.strides, ::self.strides, :],
                       ((0, 0),) * 3 + ((extra // 2, extra - extra // 2),))
    return self.act(y + shortcut)


class CifarResNet(_Model):
  """He et al.'s CIFAR ResNet, depth 6n + 2: ResNet-110 has 1,727,962 params.

  >>> CifarResNet(depth=8, num_classes=10).init_with_output(
  ...     jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)[0].shape
  (1, 10)
  """
  depth: int
  num_classes: int
  _DEPTH = 8, 2, 6, 'be 6n + 2 with n >= 1 (8, 20, 32, 44, 56, 110, ...)'

  @nn.nowrap
  def _body(self, x, conv, norm, train: bool):
    x = self.act(norm(name='stem_bn')(conv(16, name='stem_conv')(x)))
    return _stages(x, BasicBlock, [(self.depth - 2) // 6] * 3, 16, 'stage',
                   conv, norm, self.act)


class WideBasicBlock(_Block):
  """A pre-activation wide block; a 1x1 conv shortcut if the shape changes."""
  dropout_rate: float
  train: bool

  @nn.compact
  def __call__(self, x):
    preact = self.act(self.norm()(x))
    y = self.conv(self.features, strides=self.strides)(preact)
    y = self.act(self.norm()(y))
    y = nn.Dropout(self.dropout_rate, deterministic=not self.train)(y)
    y = self.conv(self.features)(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = self.conv(self.features, 1, self.strides, name='shortcut')(preact)
    return x + y


class WideResNet(_Model):
  """WRN-d-k (Zagoruyko & Komodakis): WRN-28-10 has 36,479,194 parameters.

  >>> jax.eval_shape(lambda: WideResNet(num_classes=10).init_with_output(
  ...     jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))[0].shape
  (1, 10)
  """
  num_classes: int
  depth: int = 28
  widen_factor: int = 10
  dropout_rate: float = 0.0
  _DEPTH = (10, 4, 6, 'satisfy (depth - 4) % 6 == 0 with depth >= 10 (10, '
            '16, 22, 28, 40, ...)')

  @nn.nowrap
  def _body(self, x, conv, norm, train: bool):
    x = _stages(conv(16, name='stem_conv')(x), WideBasicBlock,
                [(self.depth - 4) // 6] * 3, 16 * self.widen_factor, 'group',
                conv, norm, self.act, self.dropout_rate, train)
    return self.act(norm(name='final_bn')(x))


class VGG16(_Model):
  """VGG-16 with BatchNorm, for 32x32 images: 14,724,042 parameters.

  >>> jax.eval_shape(lambda: VGG16(num_classes=10).init_with_output(
  ...     jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))[0].shape
  (1, 10)
  """
  num_classes: int

  @nn.nowrap
  def _body(self, x, conv, norm, train: bool):
    index = 0
    for stage in ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3):
      for features in stage:
        x = conv(features, name=f'conv{index}')(x)
        x = self.act(norm(name=f'bn{index}')(x))
        index += 1
      x = nn.max_pool(x, (2, 2), strides=(2, 2))  # Ending each stage.
    return x.reshape((x.shape[0], -1))


class DenseNet(_Model):
  """Huang et al.'s CIFAR DenseNet: DenseNet-40-12 has 1,019,722 parameters.

  >>> jax.eval_shape(lambda: DenseNet(num_classes=100).init_with_output(
  ...     jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))[0].shape
  (1, 100)
  """
  num_classes: int
  depth: int = 40
  growth_rate: int = 12
  initial_features: int = 16
  dropout_rate: float = 0.0
  _DEPTH = (7, 4, 3, 'satisfy (depth - 4) % 3 == 0 with depth >= 7 (40, 100, '
            '...)')

  @nn.nowrap
  def _body(self, x, conv, norm, train: bool):
    def unit(x, name: str, features: int, size: int = 3):
      y = conv(features, size, name=f'{name}_conv')(
          self.act(norm(name=f'{name}_bn')(x)))
      return nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    x = conv(self.initial_features, name='stem_conv')(x)
    for block in range(3):
      for layer in range((self.depth - 4) // 3):
        y = unit(x, f'block{block + 1}_layer{layer}', self.growth_rate)
        x = jnp.concatenate([x, y], axis=-1)
      if block < 2:  # A transition: BN-ReLU-conv1x1-dropout-avgpool.
        x = nn.avg_pool(unit(x, f'transition{block + 1}', x.shape[-1], 1),
                        (2, 2), strides=(2, 2))
    return self.act(norm(name='final_bn')(x))


class BottleneckBlock(_Block):
  """A 1x1-3x3-1x1 bottleneck (4x expansion), strided on the 3x3 ("v1.5")."""
  @nn.compact
  def __call__(self, x):
    y = self.act(self.norm()(self.conv(self.features, 1)(x)))
    y = self.act(self.norm()(self.conv(self.features, strides=self.strides)(y)))
    y = self.norm()(self.conv(4 * self.features, 1)(y))
    if self.strides != 1 or x.shape[-1] != 4 * self.features:
      x = self.conv(4 * self.features, 1, self.strides, name='shortcut_conv')(x)
      x = self.norm(name='shortcut_bn')(x)
    return self.act(x + y)


class ResNet(_Model):
  """A bottleneck ResNet; `imagenet_stem`: torchvision's 7x7 stride-2 conv and
  max-pool for 224x224 images, else one 3x3 conv (for 64x64 Tiny ImageNet).

  >>> jax.eval_shape(lambda: ResNet50ImageNet(num_classes=10).init_with_output(
  ...     jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))[0].shape
  (1, 10)
  """
  num_classes: int
  stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
  imagenet_stem: bool = False

  @nn.nowrap
  def _body(self, x, conv, norm, train: bool):
    size, strides = (7, 2) if self.imagenet_stem else (3, 1)
    x = conv(64, size, strides, name='stem_conv')(x)
    x = self.act(norm(name='stem_bn')(x))
    if self.imagenet_stem:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    return _stages(x, BottleneckBlock, self.stage_sizes, 64, 'stage', conv,
                   norm, self.act)


# ResNet-50 for 64x64 Tiny ImageNet: 23,910,152 parameters with 200 classes.
ResNet50 = functools.partial(ResNet, stage_sizes=ResNet.stage_sizes)
# torchvision's resnet50() for ImageNet: 25,557,032 parameters, 1000 classes.
ResNet50ImageNet = functools.partial(ResNet50, imagenet_stem=True)


class MLP(_Model):
  """A multilayer perceptron on flattened images (no conv or BatchNorm).

  >>> MLP(num_classes=10).init_with_output(
  ...     jax.random.key(0), jnp.zeros((2, 28, 28, 1)), train=False)[0].shape
  (2, 10)
  """
  num_classes: int
  hidden: tuple[int, ...] = (256, 256)

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train  # Nothing behaves differently in training.
    x = jnp.asarray(x, self.dtype).reshape(x.shape[0], -1)
    for width in self.hidden:
      x = self.act(nn.Dense(width, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype, name='classifier')(x)


# The activations a config can name (`model_kwargs={'act': NAME}`).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu, 'gelu': nn.gelu}
MODELS: dict[str, Callable[..., nn.Module]] = {
    **{f'resnet{depth}': functools.partial(CifarResNet, depth=depth)
       for depth in (8, 20, 32, 44, 56, 110)},
    'wrn28_10': functools.partial(WideResNet, depth=28, widen_factor=10),
    'vgg16': VGG16,
    'densenet40_12': functools.partial(DenseNet, depth=40, growth_rate=12),
    'resnet50': ResNet50, 'resnet50_imagenet': ResNet50ImageNet, 'mlp': MLP}


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """Builds `MODELS[name]`; `conv` and `act` may name CONVS/ACTIVATIONS keys.

  >>> model = create_model('resnet110', num_classes=100, bn_axis_name='batch')
  >>> type(model).__name__, model.depth, model.num_classes
  ('CifarResNet', 110, 100)
  """
  if name not in MODELS:
    raise ValueError(f'create_model: unknown model {name!r}; known models '
                     f'are {", ".join(sorted(MODELS))}.')
  for field, named in (('conv', im2col.CONVS), ('act', ACTIVATIONS)):
    if isinstance(value := kwargs.get(field), str):
      if value not in named:
        raise ValueError(f'create_model: unknown {field} {value!r}; the '
                         f'choices are {", ".join(named)}.')
      kwargs[field] = named[value]
  cls = getattr(factory := MODELS[name], 'func', factory)
  accepted = (set(inspect.signature(cls).parameters) - {'parent', 'num_classes'}
              - set(getattr(factory, 'keywords', {})))
  if unexpected := sorted(set(kwargs) - accepted):
    raise TypeError(
        f'create_model: model {name!r} ({cls.__name__}) does not take '
        f'{", ".join(unexpected)}; it takes {", ".join(sorted(accepted))}.')
  return factory(num_classes=num_classes, **kwargs)
