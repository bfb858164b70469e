"""Wide residual networks (Zagoruyko & Komodakis 2016, "Wide Residual Networks").

WRN-d-k on NHWC input: a 3x3/16 stem convolution, three stages of n = (d - 4) / 6
pre-activation basic blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3) with 16k/32k/64k filters (the
first block of stages 2 and 3 halves the resolution), a final BN-ReLU, global average pooling
and a Dense classifier. Where the width or resolution changes, the shortcut is a 1x1
convolution of the block's pre-activated input, as in the authors' code. WRN-28-10 (36.5M
parameters for 10 classes) is the network of Nam et al. 2021 and Allen-Zhu & Li 2020 on
CIFAR; WRN-10-1 or WRN-16-1 keep CPU tests fast. No dropout: the trainer passes no dropout
key, and Nam et al. train without it.

The layer constructors are a hook (`_layer_constructors`) so that the BatchEnsemble variant
(models/batchensemble.py) reuses this body with rank-1-modulated layers.
"""

from typing import Any, Callable, Tuple

import flax.linen as nn
import jax.numpy as jnp

from churn_jax.models import layers

_PAD1 = ((1, 1), (1, 1))


def blocks_per_stage(depth: int) -> int:
  """Returns n for depth = 6n + 4, or raises a one-line ValueError."""
  if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
    raise ValueError(f'WideResNet depth must be 6n+4 with n >= 1 (e.g. 10, 16, 28), '
                     f'got {depth!r}')
  return (depth - 4) // 6


class WideBlock(nn.Module):
  """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus shortcut."""

  features: int
  stride: int
  conv: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train: bool = False):
    strides = (self.stride, self.stride)
    out = nn.relu(layers.batch_norm(train, 'bn1')(x))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = self.conv(self.features, (1, 1), strides=strides, padding=((0, 0), (0, 0)),
                           name='proj_conv')(out)
    y = self.conv(self.features, (3, 3), strides=strides, padding=_PAD1, name='conv1')(out)
    y = nn.relu(layers.batch_norm(train, 'bn2')(y))
    y = self.conv(self.features, (3, 3), padding=_PAD1, name='conv2')(y)
    return y + shortcut


class WideResNet(nn.Module):
  """WRN-depth-width for 32x32-like NHWC images.

  Attributes:
    num_classes: number of output logits.
    depth: 6n + 4 (28 for WRN-28-10).
    width: the widening factor k (10 for WRN-28-10).
  """

  num_classes: int
  depth: int = 28
  width: int = 10

  def __post_init__(self):
    blocks_per_stage(self.depth)  # Fail at construction, not at init.
    if not isinstance(self.width, int) or self.width < 1:
      raise ValueError(f'WideResNet width must be a positive int, got {self.width!r}')
    super().__post_init__()

  def _layer_constructors(self) -> Tuple[Callable[..., nn.Module], Callable[..., nn.Module]]:
    """(conv, dense) constructors; the BatchEnsemble variant returns rank-1-modulated ones."""
    return layers.conv, nn.Dense

  def _inputs(self, x: Any) -> Any:
    return x

  def _outputs(self, logits: Any) -> Any:
    return logits

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = layers.model_input(x)
    if x.ndim != 4:
      raise ValueError(f'{type(self).__name__} expects NHWC input, got shape {x.shape}')
    conv, dense = self._layer_constructors()
    n = blocks_per_stage(self.depth)
    x = conv(16, (3, 3), padding=_PAD1, name='stem_conv')(self._inputs(x))
    for s, stride in enumerate((1, 2, 2)):
      features = 16 * (2 ** s) * self.width
      for b in range(n):
        x = WideBlock(features, stride if b == 0 else 1, conv,
                      name=f'stage{s + 1}_block{b}')(x, train)
    x = nn.relu(layers.batch_norm(train, 'final_bn')(x))
    x = jnp.mean(x, axis=(1, 2))  # Global average pool.
    x = dense(self.num_classes, name='logits')(x)
    return self._outputs(jnp.asarray(x, jnp.float32))
