"""The Flax models: sizes against the papers, shapes, initialisation, BatchNorm.

Parameter counts come from `jax.eval_shape(model.init, ...)`, which traces the
model without allocating its weights, so the large networks cost no memory and
little time. Each count is checked twice: against the number published for the
architecture (within the rounding of the published figure), and exactly
against a count computed by hand from the architecture's description.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import models

# Builds and runs every model of the training app: the slow tier.
pytestmark = pytest.mark.slow

CIFAR = (32, 32, 3)
TINY_IMAGENET = (64, 64, 3)
IMAGENET = (224, 224, 3)
TINY = (8, 8, 1)

# Every registered model, with its number of classes and input size.
CASES = {
    'resnet8': (10, TINY),
    'resnet20': (10, CIFAR),
    'resnet32': (10, CIFAR),
    'resnet44': (10, CIFAR),
    'resnet56': (10, CIFAR),
    'resnet110': (100, CIFAR),
    'wrn28_10': (10, CIFAR),
    'vgg16': (10, CIFAR),
    'densenet40_12': (100, CIFAR),
    'resnet50': (200, TINY_IMAGENET),
    'resnet50_imagenet': (1000, IMAGENET),
    'mlp': (10, (28, 28, 1)),
}


def _abstract_variables(model, input_shape, batch=1):
  x = jnp.zeros((batch, *input_shape))
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), x, train=False))


def _num_params(model, input_shape):
  variables = _abstract_variables(model, input_shape)
  return sum(leaf.size for leaf in jax.tree.leaves(variables['params']))


# --- hand counts -------------------------------------------------------------
# BatchNorm has a scale and a bias per channel (its running statistics are
# 'batch_stats', not parameters); convolutions are bias-free.


def _conv(kernel, c_in, c_out):
  return kernel * kernel * c_in * c_out


def _bn(channels):
  return 2 * channels


def _dense(c_in, c_out):
  return c_in * c_out + c_out


def _cifar_resnet_count(depth, num_classes):
  # Option-A shortcuts: nothing but the two conv-BN pairs of every block.
  n = (depth - 2) // 6
  total = _conv(3, 3, 16) + _bn(16)
  c_in = 16
  for width in (16, 32, 64):
    for _ in range(n):
      total += _conv(3, c_in, width) + _bn(width)
      total += _conv(3, width, width) + _bn(width)
      c_in = width
  return total + _dense(64, num_classes)


def _wide_resnet_count(depth, k, num_classes):
  n = (depth - 4) // 6
  total = _conv(3, 3, 16)
  c_in = 16
  for width in (16 * k, 32 * k, 64 * k):
    for _ in range(n):
      total += _bn(c_in) + _conv(3, c_in, width) + _bn(width)
      total += _conv(3, width, width)
      if c_in != width:
        total += _conv(1, c_in, width)  # projection shortcut
      c_in = width
  return total + _bn(c_in) + _dense(c_in, num_classes)


def _densenet_count(depth, growth, num_classes, initial=16):
  layers = (depth - 4) // 3
  total = _conv(3, 3, initial)
  channels = initial
  for block in range(3):
    for _ in range(layers):
      total += _bn(channels) + _conv(3, channels, growth)
      channels += growth
    if block < 2:
      total += _bn(channels) + _conv(1, channels, channels)
  return total + _bn(channels) + _dense(channels, num_classes)


def _vgg16_count(num_classes):
  total, c_in = 0, 3
  for layer in (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512):
    total += _conv(3, c_in, layer) + _bn(layer)
    c_in = layer
  return total + _dense(512, num_classes)


# --- parameter counts --------------------------------------------------------


@pytest.mark.parametrize(
    'name, num_classes, input_shape, published, last_digit, hand_count',
    [
        # He et al. 2016, "Deep Residual Learning for Image Recognition",
        # Table 6 (CIFAR-10): ResNet-20 0.27M, ResNet-110 1.7M.
        ('resnet20', 10, CIFAR, 0.27e6, 0.01e6, _cifar_resnet_count(20, 10)),
        ('resnet110', 10, CIFAR, 1.7e6, 0.1e6, _cifar_resnet_count(110, 10)),
        # He et al. 2016, Table 6: ResNet-32 0.46M, ResNet-44 0.66M,
        # ResNet-56 0.85M.
        ('resnet32', 10, CIFAR, 0.46e6, 0.01e6, _cifar_resnet_count(32, 10)),
        ('resnet44', 10, CIFAR, 0.66e6, 0.01e6, _cifar_resnet_count(44, 10)),
        ('resnet56', 10, CIFAR, 0.85e6, 0.01e6, _cifar_resnet_count(56, 10)),
        # Zagoruyko & Komodakis 2016, "Wide Residual Networks" (BMVC),
        # Tables 4 and 5: WRN-28-10 36.5M.
        ('wrn28_10', 10, CIFAR, 36.5e6, 0.1e6, _wide_resnet_count(28, 10, 10)),
        # Huang et al. 2017, "Densely Connected Convolutional Networks",
        # Table 2: DenseNet (L=40, k=12) 1.0M (CIFAR-10 classifier).
        ('densenet40_12', 10, CIFAR, 1.0e6, 0.1e6, _densenet_count(40, 12, 10)),
        # kuangliu/pytorch-cifar models/vgg.py, the common CIFAR VGG-16-BN:
        # 14,728,266 = 14.7M parameters with its conv biases (ours have none).
        ('vgg16', 10, CIFAR, 14.7e6, 0.1e6, _vgg16_count(10)),
    ],
)
def test_parameter_count_matches_paper_and_hand_count(
    name, num_classes, input_shape, published, last_digit, hand_count):
  count = _num_params(models.create_model(name, num_classes), input_shape)
  assert count == hand_count
  # Published sizes are rounded: accept anything that rounds to them.
  assert abs(count - published) <= last_digit / 2, (count, published)


def test_vgg16_count_is_pytorch_cifar_count_without_conv_biases():
  # kuangliu/pytorch-cifar's VGG('VGG16') has 14,728,266 parameters; its 13
  # convolutions have biases, one per output channel.
  conv_biases = 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512
  assert _num_params(models.VGG16(num_classes=10), CIFAR) == (
      14_728_266 - conv_biases)


def test_densenet40_12_cifar100_count():
  count = _num_params(models.create_model('densenet40_12', 100), CIFAR)
  assert count == _densenet_count(40, 12, 100) == 1_060_132


def test_resnet50_count_is_torchvision_with_small_stem_and_200_classes():
  # torchvision resnet50 (ResNet50_Weights.IMAGENET1K_V1): 25,557,032
  # parameters, for the 7x7 stem and a 1000-way classifier (He et al. 2016,
  # Table 1, ResNet-50 with stride on the 3x3 conv).
  torchvision_resnet50 = 25_557_032
  expected = (torchvision_resnet50
              - _dense(2048, 1000) + _dense(2048, 200)
              - _conv(7, 3, 64) + _conv(3, 3, 64))
  assert expected == 23_910_152
  count = _num_params(models.create_model('resnet50', 200), TINY_IMAGENET)
  assert count == expected


def _bottleneck_resnet_count(stage_sizes, num_classes, stem):
  """He et al. 2016, Table 1: bottleneck stages, projection shortcuts."""
  count, c_in = stem, 64
  for stage, blocks in enumerate(stage_sizes):
    width = 64 * 2**stage
    for block in range(blocks):
      count += (_conv(1, c_in, width) + _bn(width)
                + _conv(3, width, width) + _bn(width)
                + _conv(1, width, 4 * width) + _bn(4 * width))
      if block == 0:  # every stage's first block changes the shape
        count += _conv(1, c_in, 4 * width) + _bn(4 * width)
      c_in = 4 * width
  return count + _dense(c_in, num_classes)


def test_standard_resnet50_is_torchvision_resnet50():
  # torchvision.models.resnet50(): 25,557,032 parameters (its model card,
  # ResNet50_Weights.IMAGENET1K_V1.meta['num_params']), 1000 classes, BatchNorm
  # weight and bias included as Flax's scale and bias.
  stem = _conv(7, 3, 64) + _bn(64)
  assert _bottleneck_resnet_count((3, 4, 6, 3), 1000, stem) == 25_557_032
  count = _num_params(models.create_model('resnet50_imagenet', 1000), IMAGENET)
  assert count == 25_557_032


def test_standard_resnet50_stem_reduces_224_to_56_before_the_stages():
  model = models.create_model('resnet50_imagenet', 1000)
  variables = _abstract_variables(model, IMAGENET)
  stage1 = jax.eval_shape(
      lambda v: model.apply(v, jnp.zeros((1, *IMAGENET)), train=False,
                            capture_intermediates=True,
                            mutable=['intermediates']), variables)[1]
  first_block = stage1['intermediates']['stage1_block0']['__call__'][0]
  assert first_block.shape == (1, 56, 56, 256)
  kernel = variables['params']['stem_conv']['kernel']
  assert kernel.shape == (7, 7, 3, 64)


def test_option_a_shortcuts_have_no_parameters():
  variables = _abstract_variables(models.CifarResNet(depth=20, num_classes=10),
                                  CIFAR)
  params = flax.traverse_util.flatten_dict(variables['params'], sep='/')
  # Two convs per block plus the stem: 1 + 2 * 9 kernels, and one Dense.
  kernels = [k for k in params if k.endswith('kernel')]
  assert len(kernels) == 1 + 2 * 9 + 1
  assert not any('shortcut' in k for k in params)


# --- shapes ------------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(CASES))
def test_logits_shape_in_train_and_eval_mode(name):
  num_classes, input_shape = CASES[name]
  model = models.create_model(name, num_classes)
  x = jnp.zeros((2, *input_shape))
  variables = _abstract_variables(model, input_shape, batch=2)

  def train(variables):
    return model.apply(variables, x, train=True, mutable=['batch_stats'],
                       rngs={'dropout': jax.random.key(1)})

  def evaluate(variables):
    return model.apply(variables, x, train=False)

  logits, updates = jax.eval_shape(train, variables)
  assert logits.shape == (2, num_classes) and logits.dtype == jnp.float32
  assert (jax.tree.structure(updates.get('batch_stats', {}))
          == jax.tree.structure(variables.get('batch_stats', {})))
  logits = jax.eval_shape(evaluate, variables)
  assert logits.shape == (2, num_classes) and logits.dtype == jnp.float32


def test_bfloat16_computation_keeps_float32_params_and_logits():
  model = models.create_model('resnet20', 10, dtype=jnp.bfloat16)
  variables = _abstract_variables(model, CIFAR)
  assert {p.dtype for p in jax.tree.leaves(variables['params'])} == {
      jnp.dtype(jnp.float32)}
  logits = jax.eval_shape(
      lambda v: model.apply(v, jnp.zeros((2, *CIFAR)), train=False), variables)
  assert logits.dtype == jnp.float32


def test_wide_resnet_dropout_needs_rng_only_when_training():
  model = models.WideResNet(num_classes=10, depth=10, widen_factor=1,
                            dropout_rate=0.3)
  x = jnp.zeros((2, *TINY))
  variables = _abstract_variables(model, TINY, batch=2)
  with pytest.raises(flax.errors.InvalidRngError):
    jax.eval_shape(lambda v: model.apply(v, x, train=True,
                                         mutable=['batch_stats']), variables)
  jax.eval_shape(lambda v: model.apply(v, x, train=True,
                                       mutable=['batch_stats'],
                                       rngs={'dropout': jax.random.key(1)}),
                 variables)
  jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)


# --- real computations on the tiny ResNet-8 ----------------------------------
# One jitted init, one train-mode and one eval-mode apply on batches of 8,
# shared by the tests below to keep compilation to a minimum.

BATCH = 8


@pytest.fixture(scope='module')
def resnet8():
  model = models.create_model('resnet8', 10)
  init = jax.jit(model.init, static_argnames='train')
  # XLA's RngBitGenerator ('rbg') compiles in a fraction of the time threefry
  # takes on CPU; the initialisers' distributions do not depend on it.
  key = jax.random.key(0, impl='rbg')
  variables = init(key, jnp.zeros((1, *TINY)), train=False)
  return model, variables


def _train_apply(model):
  def apply(variables, x):
    return model.apply(variables, x, train=True, mutable=['batch_stats'])
  return apply


@pytest.fixture(scope='module')
def train_apply(resnet8):
  return jax.jit(_train_apply(resnet8[0]))


@pytest.fixture(scope='module')
def eval_apply(resnet8):
  return jax.jit(lambda v, x: resnet8[0].apply(v, x, train=False))


def test_conv_init_is_he_normal_fan_out(resnet8):
  _, variables = resnet8
  params = variables['params']
  assert 'bias' not in params['stem_conv']
  # All 3x3 16 -> 16 kernels of the first stage: fan-out = 3 * 3 * 16.
  block = params['stage1_block0']
  weights = np.concatenate([np.ravel(block[c]['kernel'])
                            for c in ('Conv_0', 'Conv_1')])
  assert weights.size == 2 * 9 * 16 * 16
  np.testing.assert_allclose(weights.std(), np.sqrt(2 / (9 * 16)), rtol=0.05)
  assert abs(weights.mean()) < 0.01


def test_batchnorm_running_stats_follow_pytorch_momentum(resnet8, train_apply):
  _, variables = resnet8
  x = jax.random.normal(jax.random.key(2), (BATCH, *TINY)) + 3.0
  _, updates = train_apply(variables, x)
  # The stem BatchNorm sees the stem conv's output, computed here directly.
  kernel = variables['params']['stem_conv']['kernel']
  features = jax.lax.conv_general_dilated(
      x, kernel, (1, 1), ((1, 1), (1, 1)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  stats = updates['batch_stats']['stem_bn']
  # PyTorch momentum 0.1 == Flax momentum 0.9, from mean 0 / var 1; Flax keeps
  # the biased (population) variance.
  np.testing.assert_allclose(stats['mean'], 0.1 * features.mean((0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats['var'],
                             0.9 + 0.1 * features.var((0, 1, 2)),
                             rtol=1e-4, atol=1e-6)


def test_eval_mode_is_per_example_and_train_mode_is_not(
    resnet8, train_apply, eval_apply):
  _, variables = resnet8
  x = jax.random.normal(jax.random.key(3), (BATCH, *TINY))
  # Same first image, the rest of the batch scaled up.
  other = x.at[1:].multiply(5.0)
  eval_x, eval_other = eval_apply(variables, x), eval_apply(variables, other)
  (train_x, _), (train_other, _) = (train_apply(variables, x),
                                    train_apply(variables, other))
  assert np.all(np.isfinite(train_x)) and np.all(np.isfinite(eval_x))
  np.testing.assert_allclose(eval_x[0], eval_other[0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(train_x[0], train_other[0], rtol=1e-3, atol=1e-3)


def test_cross_replica_batchnorm_equals_one_device_on_whole_batch(
    resnet8, train_apply):
  model, variables = resnet8
  # The two halves differ in distribution, so per-device statistics differ.
  x = jax.random.normal(jax.random.key(4), (BATCH, *TINY))
  x = x.at[:BATCH // 2].add(2.0)
  logits, updates = train_apply(variables, x)

  sharded = x.reshape(2, BATCH // 2, *TINY)
  devices = jax.devices()[:2]
  synced = models.create_model('resnet8', 10, bn_axis_name='batch')
  logits_2, updates_2 = jax.pmap(
      _train_apply(synced), axis_name='batch', in_axes=(None, 0),
      devices=devices)(variables, sharded)
  np.testing.assert_allclose(logits_2.reshape(BATCH, 10), logits,
                             rtol=1e-4, atol=1e-5)
  for replica in range(2):
    jax.tree.map(
        lambda a, b, r=replica: np.testing.assert_allclose(
            a[r], b, rtol=1e-4, atol=1e-5),
        updates_2['batch_stats'], updates['batch_stats'])

  # Without the axis name each device normalises with its own half.
  _, updates_local = jax.pmap(
      _train_apply(model), axis_name='batch', in_axes=(None, 0),
      devices=devices)(variables, sharded)
  local_mean = updates_local['batch_stats']['stem_bn']['mean']
  assert not np.allclose(local_mean[0], local_mean[1], atol=1e-3)
  np.testing.assert_allclose(local_mean.mean(0),
                             updates['batch_stats']['stem_bn']['mean'],
                             rtol=1e-4, atol=1e-5)


# --- errors ------------------------------------------------------------------


def test_registry_names():
  assert set(models.MODELS) == set(CASES)


@pytest.mark.parametrize('depth', [7, 9, 21, 0, 20.0])
def test_cifar_resnet_rejects_depth_not_6n_plus_2(depth):
  with pytest.raises(ValueError, match=r'6n \+ 2'):
    models.CifarResNet(depth=depth, num_classes=10)


def test_wide_resnet_rejects_bad_depth():
  with pytest.raises(ValueError, match=r'\(depth - 4\) % 6 == 0'):
    models.WideResNet(num_classes=10, depth=27)


def test_densenet_rejects_bad_depth():
  with pytest.raises(ValueError, match=r'\(depth - 4\) % 3 == 0'):
    models.DenseNet(num_classes=10, depth=41)


def test_create_model_rejects_unknown_name_listing_known_ones():
  with pytest.raises(ValueError, match='resnet18.*resnet110.*wrn28_10'):
    models.create_model('resnet18', 10)


def test_create_model_rejects_unknown_kwargs_naming_the_model():
  with pytest.raises(TypeError, match="'resnet20' \\(CifarResNet\\).*width"):
    models.create_model('resnet20', 10, width=2)
  # The name fixes the architecture: no depth override.
  with pytest.raises(TypeError, match="'resnet20'.*depth"):
    models.create_model('resnet20', 10, depth=56)


def test_create_model_passes_attributes():
  model = models.create_model('wrn28_10', 100, dropout_rate=0.3,
                              bn_axis_name='batch')
  assert isinstance(model, models.WideResNet)
  assert (model.depth, model.widen_factor, model.num_classes,
          model.dropout_rate, model.bn_axis_name) == (28, 10, 100, 0.3,
                                                      'batch')
