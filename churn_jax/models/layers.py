"""Layers shared by the 2-D conv nets: a CPU-friendly convolution, He-normal bias-free
convolutions, BatchNorm and a 2x2 max pool.

XLA:CPU (jaxlib 0.10.2) runs a convolution either through YNNPACK or, where its YNNPACK pass
declines, through Eigen. The pass declines every convolution whose input and output both
have fewer than 32 channels, and Eigen runs the few-channel ones (LeNet5's 3->6, the ResNets'
3->16 stem) at 5-15 GFLOP/s against YNNPACK's 45-60 here (docs/PERFORMANCE.md). The gradient
of a convolution comes out as one convolution whose window is the whole feature map, 3x
slower than the forward pass. `cpu_conv` works around both, on the CPU lowering only.
"""

import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

# Examples per chunk of the CPU weight gradient (see cpu_conv).
WEIGHT_GRAD_CHUNK = 16
# The CPU forward pass pads the output channels of a convolution with at most this many input
# channels up to YNN_MIN_CHANNELS (zero filters, sliced off), so that YNNPACK takes it. Measured
# to pay only for few input channels: for 16->16 the 2x arithmetic costs more than it saves.
PAD_MAX_INPUT_CHANNELS = 8
YNN_MIN_CHANNELS = 32


def _chunked_weight_grad(conv, lhs, rhs, cotangent, chunk, interleave=True):
  """d(conv)/d(rhs) as the sum of the weight gradients of `chunk`-example slices.

  Chunk i holds examples i, i + n, i + 2n, ... (n chunks): a batch split over the devices of
  a ('data',) mesh in contiguous blocks then keeps every chunk split the same way, where
  contiguous chunks each lived on one device and GSPMD moved half of each to the other
  (collective-permutes, LeNet5 on 2 devices). `interleave=False`: contiguous chunks.
  Unrolled: the same sum as a lax.scan ran slower on XLA:CPU. The price is compile time
  (one gradient convolution per chunk in the program).
  """
  batch = lhs.shape[0]
  if batch <= chunk or batch % chunk:
    return jax.vjp(lambda w: conv(lhs, w), rhs)[1](cotangent)[0]
  n = batch // chunk
  if interleave:
    pick = lambda a, i: a.reshape((chunk, n) + a.shape[1:])[:, i]
  else:
    pick = lambda a, i: a[i * chunk:(i + 1) * chunk]
  grads = [jax.vjp(lambda w, i=i: conv(pick(lhs, i), w), rhs)[1](pick(cotangent, i))[0]
           for i in range(n)]
  return functools.reduce(lambda a, b: a + b, grads)


def _padded_forward(conv, lhs, rhs, dimension_numbers):
  """conv(lhs, rhs) computed with the output channels padded to YNN_MIN_CHANNELS.

  The padded filters are zeros and their outputs are sliced off, so every kept output is the
  same sum of products; only the kernel that computes it changes (YNNPACK, not Eigen).
  """
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  out_dim, in_dim = dn.rhs_spec[0], dn.rhs_spec[1]
  features = rhs.shape[out_dim]
  if (rhs.shape[in_dim] > PAD_MAX_INPUT_CHANNELS or features >= YNN_MIN_CHANNELS
      or lhs.shape[dn.lhs_spec[1]] != rhs.shape[in_dim]):  # Grouped: left alone.
    return conv(lhs, rhs)
  widths = [(0, 0)] * rhs.ndim
  widths[out_dim] = (0, YNN_MIN_CHANNELS - features)
  out = conv(lhs, jnp.pad(rhs, widths))
  return lax.slice_in_dim(out, 0, features, axis=dn.out_spec[1])


def cpu_conv(lhs, rhs, *args, **kwargs):
  """lax.conv_general_dilated, with a faster forward pass and weight gradient on XLA:CPU.

  Forward: few-channel convolutions get zero output channels up to YNN_MIN_CHANNELS so that
  YNNPACK runs them (LeNet5's first layer: 1.6x faster with 5x the arithmetic). Weight
  gradient: the sum over 16-example slices of the batch (the 32x32x16 ResNet layer: 21 ms
  against XLA's 84 ms, 2 cores). The input gradient is XLA's. Only the CPU lowering is
  changed; accelerators get XLA's own convolution and gradients. Needs batch-first dimension
  numbers (Flax's default).
  """
  conv = lambda l, r: lax.conv_general_dilated(l, r, *args, **kwargs)
  dimension_numbers = kwargs.get("dimension_numbers", args[4] if len(args) > 4 else None)

  @jax.custom_vjp
  def f(lhs, rhs):
    return lax.platform_dependent(
        lhs, rhs, cpu=lambda l, r: _padded_forward(conv, l, r, dimension_numbers),
        default=conv)

  def fwd(lhs, rhs):
    return f(lhs, rhs), (lhs, rhs)

  def bwd(res, cotangent):
    lhs, rhs = res
    d_lhs = jax.vjp(lambda x: conv(x, rhs), lhs)[1](cotangent)[0]
    d_rhs = lax.platform_dependent(
        lhs, rhs, cotangent,
        cpu=lambda *a: _chunked_weight_grad(conv, *a, WEIGHT_GRAD_CHUNK),
        default=lambda *a: _chunked_weight_grad(conv, *a, a[0].shape[0]))
    return d_lhs, d_rhs

  f.defvjp(fwd, bwd)
  return f(lhs, rhs)


# The name the ResNets and BatchEnsemble used before the forward pass was changed too.
chunked_weight_grad_conv = cpu_conv

conv_init = nn.initializers.he_normal()  # "Kaiming" init, He et al. 2015/2016.
# Convolutions are followed by BatchNorm, whose shift makes a bias redundant.
conv = functools.partial(nn.Conv, use_bias=False, kernel_init=conv_init,
                         conv_general_dilated=cpu_conv)


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME') on NHWC, as a reshape and a max.

  Same values. Its gradient is a compare and a divide that XLA fuses, where nn.max_pool's
  select-and-scatter costs XLA:CPU an argmax reduce-window and a scatter (a fifth of the
  LeNet5 step). Where a window holds tied maxima the gradient is split among them rather than
  given to the first: after a ReLU such ties are zeros, whose gradient the ReLU zeroes anyway.
  """
  n, h, w, c = x.shape
  if h % 2 or w % 2:  # SAME padding of an odd size: pad with -inf as reduce_window does.
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
    n, h, w, c = x.shape
  return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))
