"""Convolutions as im2col and one matrix product, a model's `conv` choice.

XLA:CPU puts a convolution into its fast (Eigen) layout only at the top level
of a program (ConvCanonicalization visits the entry computation alone), so in
`lax.scan`'s loop (train/seeds.py) autodiff's weight-gradient convolutions run
10-50x slower (ResNet-8 on digits: ~120 ms a step against ~7 ms). As pads,
strided slices and one `dot_general` they run at full speed and vmap to a
batched matrix product. Chosen with `model_kwargs={'conv': 'im2col'}`.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def conv_im2col(lhs, rhs, window_strides, padding, lhs_dilation=None,
                rhs_dilation=None, dimension_numbers=None,
                feature_group_count=1, precision=None):
  """`lax.conv_general_dilated` (as `nn.Conv` calls it) for 2-D NHWC/HWIO
  without dilation or groups: the kh x kw shifted, strided views of the padded
  input, concatenated in `rhs.reshape(-1, out)`'s order, times the kernel.

  Example:
    >>> x = jnp.ones((1, 4, 4, 2))
    >>> w = jnp.ones((3, 3, 2, 5))
    >>> conv_im2col(x, w, (1, 1), 'SAME')[0, :, :, 0]
    Array([[ 8., 12., 12.,  8.],
           [12., 18., 18., 12.],
           [12., 18., 18., 12.],
           [ 8., 12., 12.,  8.]], dtype=float32)
  """
  kh, kw, cin, cout = rhs.shape
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
  sh, sw = window_strides
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], (kh, kw),
                                      window_strides, padding)
  x = jnp.pad(lhs, ((0, 0), *padding, (0, 0)))
  out_h = (x.shape[1] - kh) // sh + 1
  out_w = (x.shape[2] - kw) // sw + 1
  columns = jnp.concatenate([
      x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
      for i in range(kh) for j in range(kw)], axis=-1)
  return jnp.einsum('nhwk,ko->nhwo', columns, rhs.reshape(kh * kw * cin, cout),
                    precision=precision)


# `nn.Conv` computing with `conv_im2col`: same parameters, same names.
Im2colConv = functools.partial(nn.Conv, conv_general_dilated=conv_im2col)

# The convolutions a config can name (`model_kwargs={'conv': NAME}`).
CONVS = {'xla': nn.Conv, 'im2col': Im2colConv}
