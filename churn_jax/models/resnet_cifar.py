"""ResNet v1 for CIFAR (He et al. 2016, "Deep Residual Learning for Image
Recognition", Section 4.2).

depth = 6n + 2: a 3x3/16 stem conv, three stages of n basic blocks with
16/32/64 filters (the first block of stages 2 and 3 halves the resolution),
global average pooling and a Dense classifier. ResNet-20/32/56 have about
0.27M/0.46M/0.85M parameters for 10 classes.

Where the shape changes, the shortcut is a 1x1 conv + BN projection (the
paper's option B) rather than zero padding (option A); it adds only ~3K
parameters and keeps every block a plain Flax module.
"""

import flax.linen as nn
import jax.numpy as jnp

from churn_jax.models import layers

_FILTERS = (16, 32, 64)
_STRIDES = (1, 2, 2)


def blocks_per_stage(depth: int) -> int:
  """Returns n for depth = 6n + 2, or raises a one-line ValueError."""
  if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
    raise ValueError(
        f'ResNetCIFAR depth must be 6n+2 with n >= 1 (e.g. 20, 32, 56), '
        f'got {depth!r}')
  return (depth - 2) // 6


class BasicBlock(nn.Module):
  """conv3x3-BN-relu-conv3x3-BN, plus shortcut, then relu."""

  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = layers.conv
    residual = x
    y = conv(self.features, (3, 3), strides=(self.stride, self.stride),
             padding=((1, 1), (1, 1)), name='conv1')(x)
    y = nn.relu(layers.batch_norm(train, 'bn1')(y))
    y = conv(self.features, (3, 3), padding=((1, 1), (1, 1)), name='conv2')(y)
    y = layers.batch_norm(train, 'bn2')(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      # Projection shortcut: only where resolution or width changes.
      residual = conv(self.features, (1, 1),
                      strides=(self.stride, self.stride), name='proj_conv')(x)
      residual = layers.batch_norm(train, 'proj_bn')(residual)
    return nn.relu(y + residual)


class ResNetCIFAR(nn.Module):
  """CIFAR ResNet v1 of depth 6n+2 on NHWC input.

  Attributes:
    num_classes: number of output logits.
    depth: 6n + 2, e.g. 20, 32, 44, 56, 110.
  """

  num_classes: int
  depth: int = 20

  def __post_init__(self):
    blocks_per_stage(self.depth)  # Fail at construction, not at init.
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = layers.model_input(x)
    if x.ndim != 4:
      raise ValueError(f'ResNetCIFAR expects NHWC input, got shape {x.shape}')
    n = blocks_per_stage(self.depth)
    x = layers.conv(16, (3, 3), padding=((1, 1), (1, 1)), name='stem_conv')(x)
    x = nn.relu(layers.batch_norm(train, 'stem_bn')(x))
    for s, (features, stride) in enumerate(zip(_FILTERS, _STRIDES)):
      for b in range(n):
        x = BasicBlock(features, stride if b == 0 else 1,
                       name=f'stage{s + 1}_block{b}')(x, train)
    x = jnp.mean(x, axis=(1, 2))  # Global average pool.
    x = nn.Dense(self.num_classes, name='logits')(x)
    return jnp.asarray(x, jnp.float32)
