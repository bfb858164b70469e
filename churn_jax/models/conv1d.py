"""1-D convolutional network: the MNIST-1D "ConvBase" (Greydanus 2020).

Reference: S. Greydanus, "Scaling down Deep Learning", 2020
(github.com/greydanus/mnist1d, ``models.py``: ``ConvBase``). The reference
model is three Conv1d layers of 25 channels, all stride 2 and padding 1, with
kernel sizes 5, 3, 3, each followed by ReLU, then flatten and a linear layer.
On the 40-sample MNIST-1D input the lengths go 40 -> 19 -> 10 -> 5, so the
linear layer sees 5 * 25 = 125 features (the reference ``linear_in=125``).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from churn_jax.models import layers


class Conv1DNet(nn.Module):
  """MNIST-1D ConvBase: strided Conv1D+ReLU layers, flatten, Dense logits.

  Attributes:
    num_classes: number of output logits.
    channels: feature channels of every conv layer (25 in the paper).
    kernel_sizes: one kernel size per conv layer ((5, 3, 3) in the paper).
    stride: stride of every conv layer.
    padding: symmetric zero padding of every conv layer (PyTorch style).
  """

  num_classes: int
  channels: int = 25
  kernel_sizes: Sequence[int] = (5, 3, 3)
  stride: int = 2
  padding: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No BatchNorm or dropout: train and eval are identical.
    x = layers.model_input(x)
    if x.ndim == 2:
      # (B, L) signals get a single input channel, as ``x.view(-1, 1, L)``
      # does in the reference (NLC here instead of PyTorch's NCL).
      x = x[..., None]
    if x.ndim != 3:
      raise ValueError(
          f'Conv1DNet expects (B, L) or (B, L, C) input, got shape {x.shape}')
    pad = ((self.padding, self.padding),)
    for i, k in enumerate(self.kernel_sizes):
      x = nn.Conv(self.channels, (k,), strides=(self.stride,), padding=pad,
                  name=f'conv_{i}')(x)
      x = nn.relu(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(self.num_classes, name='logits')(x)
    return jnp.asarray(x, jnp.float32)
