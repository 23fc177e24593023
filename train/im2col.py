"""Convolutions as im2col and a matmul, `model_kwargs={'conv': 'im2col'}`: in
`lax.scan` (train/seeds.py) XLA:CPU runs conv weight gradients 10-50x slower."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def conv_im2col(lhs, rhs, window_strides, padding, lhs_dilation=None,
                rhs_dilation=None, dimension_numbers=None,
                feature_group_count=1, precision=None):
  """`lax.conv_general_dilated` for 2-D NHWC/HWIO without dilation or groups:
  the kernel times the padded input's kh x kw shifted, strided views.

  >>> x, w = jnp.ones((1, 3, 3, 2)), jnp.ones((3, 3, 2, 5))
  >>> conv_im2col(x, w, (1, 1), 'SAME')[0, :, :, 0]
  Array([[ 8., 12.,  8.],
         [12., 18., 12.],
         [ 8., 12.,  8.]], dtype=float32)
  """
  (kh, kw, cin, cout), (sh, sw) = rhs.shape, window_strides
  expected = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                            ('NHWC', 'HWIO', 'NHWC'))
  if (lhs.ndim != 4 or feature_group_count != 1
      or any(d != 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
      or dimension_numbers not in (None, expected)):
    raise NotImplementedError(
        'conv_im2col covers 2-D NHWC/HWIO convolutions without dilation or '
        f'groups; got lhs {lhs.shape}, rhs {rhs.shape}, dimension_numbers='
        f'{dimension_numbers}, feature_group_count={feature_group_count}, '
        f'dilations {lhs_dilation}, {rhs_dilation}. Use conv="xla".')
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], (kh, kw),
                                      window_strides, padding)
  x = jnp.pad(lhs, ((0, 0), *padding, (0, 0)))
  out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  columns = jnp.concatenate([  # In the order of rhs.reshape(-1, cout).
      x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
      for i in range(kh) for j in range(kw)], axis=-1)
  return jnp.einsum('nhwk,ko->nhwo', columns, rhs.reshape(kh * kw * cin, cout),
                    precision=precision)


# `nn.Conv` computing with `conv_im2col`: same parameters, same names.
Im2colConv = functools.partial(nn.Conv, conv_general_dilated=conv_im2col)
# The convolutions a config can name (`model_kwargs={'conv': NAME}`).
CONVS = {'xla': nn.Conv, 'im2col': Im2colConv}
