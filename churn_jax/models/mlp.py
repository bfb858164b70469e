"""Multi-layer perceptron baseline.

A plain stack of Dense+ReLU layers followed by a Dense logit layer, the
"MLPBase" family used as the fully-connected baseline in MNIST-1D
(Greydanus 2020) and most churn studies on tabular/small inputs.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from churn_jax.models import layers


class MLP(nn.Module):
  """Dense+ReLU hidden layers, then Dense logits.

  Attributes:
    num_classes: number of output logits.
    hidden: widths of the hidden layers (may be empty: a linear model).
  """

  num_classes: int
  hidden: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No BatchNorm or dropout: train and eval are identical.
    x = layers.model_input(x)
    # Flatten everything but the batch axis so images, sequences and
    # feature vectors all work without a reshape in the caller.
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f'dense_{i}')(x))
    x = nn.Dense(self.num_classes, name='logits')(x)
    return jnp.asarray(x, jnp.float32)
