"""Pre-activation ResNet v2 with bottleneck blocks (He et al. 2016,
"Identity Mappings in Deep Residual Networks").

ResNet-v2-50: a 7x7/64 stride-2 stem conv and 3x3 stride-2 max pool, then
stages of [3, 4, 6, 3] bottleneck blocks with 64/128/256/512 base filters
(each block outputs 4x its base filters), stride 2 in the first block of
stages 2-4, a final BN+relu, global average pooling and a Dense classifier:
about 25.5M parameters for 1000 classes.

As in the reference implementation (tf-slim ``resnet_v2``) the stem has no
BN/relu after it, because every block begins with BN+relu ("pre-activation"),
and a projection shortcut, where needed, reads the pre-activated input.
"""

import flax.linen as nn
import jax.numpy as jnp

from churn_jax.models import layers


# Blocks per stage for the standard bottleneck depths.
STAGE_SIZES = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_BASE_FILTERS = (64, 128, 256, 512)


class PreActBottleneck(nn.Module):
  """BN-relu, then 1x1 -> BN-relu -> 3x3 (strided) -> BN-relu -> 1x1 (4x)."""

  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = layers.conv
    out_features = 4 * self.features
    preact = nn.relu(layers.batch_norm(train, 'preact_bn')(x))
    if self.stride != 1 or x.shape[-1] != out_features:
      shortcut = conv(out_features, (1, 1),
                      strides=(self.stride, self.stride),
                      name='proj_conv')(preact)
    else:
      shortcut = x  # Identity path stays un-normalised (the v2 point).
    y = conv(self.features, (1, 1), name='conv1')(preact)
    y = nn.relu(layers.batch_norm(train, 'bn1')(y))
    y = conv(self.features, (3, 3), strides=(self.stride, self.stride),
             padding=((1, 1), (1, 1)), name='conv2')(y)
    y = nn.relu(layers.batch_norm(train, 'bn2')(y))
    y = conv(out_features, (1, 1), name='conv3')(y)
    return y + shortcut


class ResNetV2(nn.Module):
  """Pre-activation bottleneck ResNet (50, 101 or 152 layers), NHWC input.

  Attributes:
    num_classes: number of output logits.
    depth: one of the keys of ``STAGE_SIZES``.
  """

  num_classes: int
  depth: int = 50

  def __post_init__(self):
    if self.depth not in STAGE_SIZES:
      raise ValueError(f'ResNetV2 depth must be one of '
                       f'{sorted(STAGE_SIZES)}, got {self.depth!r}')
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = layers.model_input(x)
    if x.ndim != 4:
      raise ValueError(f'ResNetV2 expects NHWC input, got shape {x.shape}')
    x = layers.conv(64, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)),
                    name='stem_conv')(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for s, (n, features) in enumerate(zip(STAGE_SIZES[self.depth],
                                          _BASE_FILTERS)):
      for b in range(n):
        stride = 2 if (s > 0 and b == 0) else 1
        x = PreActBottleneck(features, stride,
                             name=f'stage{s + 1}_block{b}')(x, train)
    # Blocks end in an un-normalised sum, so normalise once before pooling.
    x = nn.relu(layers.batch_norm(train, 'final_bn')(x))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, name='logits')(x)
    return jnp.asarray(x, jnp.float32)
