"""Layers shared by the 2-D conv nets: a CPU-friendly convolution, He-normal bias-free
convolutions, BatchNorm and a 2x2 max pool.

XLA:CPU (jaxlib 0.10.2) runs a convolution either through YNNPACK or, where its YNNPACK pass
declines, through Eigen. The pass declines every convolution whose input and output both
have fewer than 32 channels, and Eigen runs the few-channel ones (LeNet5's 3->6, the ResNets'
3->16 stem) at 5-15 GFLOP/s against YNNPACK's 45-60 here (docs/PERFORMANCE.md). The gradient
of a convolution comes out as one convolution whose window is the whole feature map, 3x
slower than the forward pass, and the input gradient of a strided one as a convolution with
lhs dilation, which YNNPACK declines. `cpu_conv` works around all three, on the CPU lowering
only.
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


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset:
  """The ISA flags of this host's CPU ("avx2", "avx512f", ...); empty where unreadable."""
  try:
    with open(cpuinfo) as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.split(":", 1)[1].split())
  except OSError:  # Not Linux: no flags, the rule below keeps its AVX2 choice.
    pass
  return frozenset()


def pad_pays(flags: frozenset) -> bool:
  """Whether the padded few-channel forward is faster than Eigen's on this CPU.

  Measured on the LeNet5 step (benchmarks/conv_levers.py, no_pad against current): on an AVX2
  AMD EPYC (Zen 3) YNNPACK's padded convolution won (no_pad 1.11x slower), on an AVX-512 AMD
  EPYC (Zen 4) Eigen's AVX-512 kernels won (no_pad 0.78x, conv 1 alone 8.7 against 24.5 ms).
  The CPU type already fixes the low bits of every result, so this adds no new dependence.
  """
  return "avx512f" not in flags


# Decided once per process, on the host that traces the step (the CPU lowering only).
PAD_FEW_CHANNELS = pad_pays(cpu_flags())


def _chunked_weight_grad(conv, lhs, rhs, cotangent, chunk, interleave=False):
  """d(conv)/d(rhs) as the sum of the weight gradients of `chunk`-example slices.

  Unrolled: the same sum as a lax.scan ran 13x slower on XLA:CPU (a convolution inside a
  while loop loses YNNPACK). The price is compile time (one gradient convolution per chunk).
  `interleave`: chunk i holds examples i, i + n, i + 2n, ... (n chunks), so that a batch
  split over the devices of a ('data',) mesh in contiguous blocks keeps every chunk split
  the same way; contiguous chunks each live on one device and GSPMD moves half of each to
  the other (collective-permutes). On one device it computes as fast but compiled 7x slower
  (ResNet-20: 200 s against 28 s), so only the models that split the batch use it.
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


def _phase_input_grad(lhs, rhs, cotangent, strides, padding):
  """Input gradient of a stride-2 NHWC/HWIO convolution as four stride-1 convolutions.

  XLA writes it as one convolution with lhs_dilation 2, which YNNPACK declines, and Eigen
  ran it at a third of the forward pass's speed. Padded input row 2a+r, column 2b+s only
  meets the kernel taps rhs[r::2, s::2]: its gradient is the input gradient of a stride-1
  VALID convolution with those taps over the input's (r, s) phase. The four phases are
  computed so and interleaved back.
  """
  n, h, w, cin = lhs.shape
  ho, wo = cotangent.shape[1:3]
  kh, kw = rhs.shape[:2]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads((h, w), (kh, kw), strides, padding)
  (lo_h, hi_h), (lo_w, hi_w) = padding
  hp, wp = h + lo_h + hi_h, w + lo_w + hi_w
  phase_shape = (n, (hp + 1) // 2, (wp + 1) // 2, cin)  # Padded to even sizes.
  rows = []
  for r in range(2):
    row = []
    for s in range(2):
      taps = rhs[r::2, s::2]
      if 0 in taps.shape[:2]:  # A 1x1 kernel meets only phase (0, 0).
        row.append(jnp.zeros(phase_shape, cotangent.dtype))
        continue
      conv = lambda a, t=taps: lax.conv_general_dilated(
          a, t, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))[:, :ho, :wo]
      row.append(jax.vjp(conv, jnp.zeros(phase_shape, lhs.dtype))[1](cotangent)[0])
    rows.append(jnp.stack(row, axis=3))
  full = jnp.stack(rows, axis=2).reshape(n, 2 * phase_shape[1], 2 * phase_shape[2], cin)
  return full[:, lo_h:lo_h + h, lo_w:lo_w + w]


def _conv_args(args, kwargs):
  """(window_strides, padding, dimension_numbers, plain) of a conv_general_dilated call;
  plain: NHWC/HWIO, no dilation, no groups (what the phase input gradient handles)."""
  names = ("window_strides", "padding", "lhs_dilation", "rhs_dilation", "dimension_numbers",
           "feature_group_count", "batch_group_count")
  given = dict(zip(names, args), **kwargs)
  dn = given.get("dimension_numbers")
  plain = (all(d == 1 for k in ("lhs_dilation", "rhs_dilation") for d in given.get(k) or (1,))
           and given.get("feature_group_count", 1) == 1
           and given.get("batch_group_count", 1) == 1
           and (dn == ("NHWC", "HWIO", "NHWC")
                or tuple(getattr(dn, "lhs_spec", ())) == (0, 3, 1, 2)
                and tuple(dn.rhs_spec) == (3, 2, 0, 1) and tuple(dn.out_spec) == (0, 3, 1, 2)))
  return given.get("window_strides"), given.get("padding"), dn, plain


def make_cpu_conv(interleave_chunks: bool = False):
  """lax.conv_general_dilated, computed faster on XLA:CPU (forward and both gradients).

  Forward: few-channel convolutions get zero output channels up to YNN_MIN_CHANNELS so that
  YNNPACK runs them, on CPUs where that measured faster (PAD_FEW_CHANNELS: LeNet5's first
  layer 1.6x faster with 5x the arithmetic on AVX2, slower than Eigen on AVX-512). Weight
  gradient: the sum over 16-example slices of the batch (the 32x32x16 ResNet layer: 21 ms
  against XLA's 84 ms, 2 cores); `interleave_chunks` for models whose batch is split over
  devices (_chunked_weight_grad). Input gradient of a stride-2 convolution: four stride-1
  phase convolutions (_phase_input_grad); otherwise XLA's. Only the CPU lowering is changed;
  accelerators get XLA's own convolution and gradients. Needs batch-first dimension numbers
  (Flax's default).
  """
  def cpu_conv(lhs, rhs, *args, **kwargs):
    conv = lambda l, r: lax.conv_general_dilated(l, r, *args, **kwargs)
    strides, padding, dimension_numbers, plain = _conv_args(args, kwargs)
    phases = plain and tuple(strides or ()) == (2, 2)

    def cpu_input_grad(lhs, rhs, cotangent):
      if phases:
        return _phase_input_grad(lhs, rhs, cotangent, strides, padding)
      return jax.vjp(lambda x: conv(x, rhs), lhs)[1](cotangent)[0]

    cpu_forward = conv
    if PAD_FEW_CHANNELS:  # Read at trace time, so a test can set it.
      cpu_forward = lambda l, r: _padded_forward(conv, l, r, dimension_numbers)

    @jax.custom_vjp
    def f(lhs, rhs):
      return lax.platform_dependent(lhs, rhs, cpu=cpu_forward, default=conv)

    def fwd(lhs, rhs):
      return f(lhs, rhs), (lhs, rhs)

    def bwd(res, cotangent):
      lhs, rhs = res
      cpu = lambda *a: (cpu_input_grad(*a), _chunked_weight_grad(
          conv, *a, WEIGHT_GRAD_CHUNK, interleave_chunks))
      default = lambda l, r, g: jax.vjp(conv, l, r)[1](g)
      return tuple(lax.platform_dependent(lhs, rhs, cotangent, cpu=cpu, default=default))

    f.defvjp(fwd, bwd)
    return f(lhs, rhs)
  return cpu_conv


cpu_conv = make_cpu_conv()
# For models whose batch the trainer splits over one CPU device per core (LeNet5).
cpu_conv_split_batch = make_cpu_conv(interleave_chunks=True)

def model_input(x) -> jax.Array:
  """A model's input as float32, or kept in bfloat16 when the stack computes in bfloat16.

  The stack (engine/stack.py) casts inputs and parameters to `config.compute_dtype`; Flax
  layers then compute in the dtype of their operands, while BatchNorm statistics stay
  float32 (Flax reduces in float32) and every model returns float32 logits.
  """
  x = jnp.asarray(x)
  return x if x.dtype == jnp.bfloat16 else x.astype(jnp.float32)


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
