"""LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document
recognition"), in its common modern form: ReLU activations and max pooling.

Both convolutions and both pools use SAME padding so that small inputs such
as the 8x8 scikit-learn digits keep a non-zero spatial size
(8 -> 4 -> 2); on 28x28 MNIST the feature map goes 28 -> 14 -> 7.
"""

import flax.linen as nn
import jax.numpy as jnp

from churn_jax.models import layers


class LeNet5(nn.Module):
  """conv6@5x5-pool-conv16@5x5-pool-Dense120-Dense84-Dense logits (NHWC).

  Attributes:
    num_classes: number of output logits.
  """

  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No BatchNorm or dropout: train and eval are identical.
    x = layers.model_input(x)
    if x.ndim != 4:
      raise ValueError(f'LeNet5 expects NHWC input, got shape {x.shape}')
    for i, features in enumerate((6, 16)):
      # The same convolution, run faster by XLA:CPU (models/layers.py); chunks of the weight
      # gradient interleaved since LeNet5's batch is split over the CPU cores.
      x = nn.Conv(features, (5, 5), padding='SAME', name=f'conv_{i}',
                  conv_general_dilated=layers.cpu_conv_split_batch)(x)
      x = nn.relu(x)
      x = layers.max_pool_2x2(x)  # nn.max_pool's values, a cheaper gradient on CPU.
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(120, name='fc_0')(x))
    x = nn.relu(nn.Dense(84, name='fc_1')(x))
    x = nn.Dense(self.num_classes, name='logits')(x)
    return jnp.asarray(x, jnp.float32)
