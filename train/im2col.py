"""Convolutions as im2col and one matrix product, a model's `conv` choice.

XLA:CPU rewrites a convolution into the layout its fast (Eigen) kernel needs
only at the top level of a program: its ConvCanonicalization pass visits
`module->entry_computation()` alone (openxla/xla,
xla/service/cpu/conv_canonicalization.cc). Inside `lax.scan`'s while loop
(the multi-seed runner's epoch, train/seeds.py) the weight-gradient
convolutions that autodiff emits keep their layout and run through the
generic loop-nest emitter, 10-50x slower: a ResNet-8 step on digits takes
~120 ms in a scan against ~7 ms as a top-level jitted step. As pads, strided
slices and one `dot_general`, the same convolution runs at full speed in the
loop and vmaps to a batched matrix product.

Every model of train/models.py takes its convolution as an attribute,
`conv: ModuleDef = nn.Conv` as in the Flax ImageNet example; `Im2colConv`
is the drop-in replacement, chosen in a config with
`model_kwargs={'conv': 'im2col'}`.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def conv_im2col(lhs, rhs, window_strides, padding, lhs_dilation=None,
                rhs_dilation=None, dimension_numbers=None,
                feature_group_count=1, precision=None):
  """`lax.conv_general_dilated` for NHWC/HWIO as im2col and one matmul.

  Takes the arguments Flax's `nn.Conv` passes. The kh x kw shifted (and
  strided) views of the padded input are concatenated along the channels,
  in the (row, column, channel) order of `rhs.reshape(-1, out_features)`,
  and contracted with the kernel. Supports what the models of
  train/models.py use: 2-D, no dilation, one feature group.

  Args:
    lhs: (batch, height, width, in_features) input.
    rhs: (kh, kw, in_features, out_features) kernel.
    window_strides: (stride_h, stride_w).
    padding: 'SAME', 'VALID' or ((low, high), (low, high)).
    lhs_dilation: None or all ones.
    rhs_dilation: None or all ones.
    dimension_numbers: None or those of ('NHWC', 'HWIO', 'NHWC').
    feature_group_count: 1.
    precision: passed to the matrix product.

  Returns:
    The convolution, (batch, out_height, out_width, out_features).

  Raises:
    NotImplementedError: a convolution this function does not cover.

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
  (top, bottom), (left, right) = padding
  x = jnp.pad(lhs, ((0, 0), (top, bottom), (left, right), (0, 0)))
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
