"""A flax.linen model of the user's own: any Module with a `num_classes` field works."""

import flax.linen as nn
import jax.numpy as jnp


class ResidualMLP(nn.Module):
  """Dense stem, `depth` residual Dense+ReLU blocks of width `width`, Dense logits.

  churn_jax builds it as ResidualMLP(num_classes=K, **config.model minus name) and calls
  model.apply(variables, x, train=...), expecting logits (B, K).
  """
  num_classes: int
  width: int = 32
  depth: int = 2
  # Read by churn_jax's registry: no conv layers (vmap on CPU), no BatchNorm statistics.
  CONVOLUTIONAL = False
  BATCH_NORM = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No dropout or BatchNorm.
    x = jnp.asarray(x, jnp.float32).reshape((x.shape[0], -1))
    h = nn.Dense(self.width, name="stem")(x)
    for i in range(self.depth):
      h = h + nn.relu(nn.Dense(self.width, name=f"block_{i}")(h))
    return nn.Dense(self.num_classes, name="logits")(nn.relu(h))
