"""train/im2col.py: the same convolution and the same model, as a matmul."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import im2col
from train import models


@pytest.mark.parametrize('shape, kernel, strides, padding', [
    ((2, 6, 6, 1), (3, 3, 1, 4), (1, 1), ((1, 1), (1, 1))),
    ((2, 6, 6, 4), (3, 3, 4, 8), (2, 2), ((1, 1), (1, 1))),
    ((2, 5, 5, 4), (1, 1, 4, 8), (2, 2), 'VALID'),
])
def test_conv_im2col_matches_lax_conv(shape, kernel, strides, padding):
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), kernel)

  def reference(x, w):
    return jax.lax.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        precision='highest')

  def ours(x, w):
    return im2col.conv_im2col(x, w, strides, padding, precision='highest')

  np.testing.assert_allclose(ours(x, w), reference(x, w), rtol=1e-5,
                             atol=1e-5)
  # Gradients too: training differentiates through it.
  grads = jax.grad(lambda x, w: jnp.sum(ours(x, w) ** 2), argnums=(0, 1))(x, w)
  expected = jax.grad(lambda x, w: jnp.sum(reference(x, w) ** 2),
                      argnums=(0, 1))(x, w)
  for got, want in zip(grads, expected):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_model_with_im2col_is_the_same_function_with_the_same_parameters():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  plain = models.create_model('resnet8', 10)
  matmul = models.create_model('resnet8', 10, conv='im2col')
  # Jitted: one compilation instead of one per operation.
  variables = jax.jit(lambda x: plain.init(jax.random.key(1), x,
                                           train=False))(x)
  assert (jax.tree.structure(jax.eval_shape(
      lambda x: matmul.init(jax.random.key(1), x, train=False), x))
          == jax.tree.structure(variables))
  apply = jax.jit(lambda model, v, x: model.apply(v, x, train=False),
                  static_argnums=0)
  # Float32 products summed in another order: about 1e-6 relative.
  np.testing.assert_allclose(apply(matmul, variables, x),
                             apply(plain, variables, x), rtol=1e-4, atol=1e-5)


def test_an_unknown_conv_name_is_refused():
  with pytest.raises(ValueError, match="unknown conv 'fft'.*xla, im2col"):
    models.create_model('resnet8', 10, conv='fft')
