"""The learner of Allen-Zhu & Li 2020 (arXiv 2012.09816, Sec. 4): a patch-wise convolution.

    F_j(X) = sum_{r in [m]} sum_{p in [P]} ReLU~(<w_{j,r}, x_p>),   j = 1..k,

one layer, m filters per class shared over the P patches, no bias and no output layer. The
smoothed ReLU is 0 below 0, z^q / (q rho^(q-1)) on [0, rho] (the power-law phase in which,
from a small initialisation, the view a filter correlates with most wins a tensor-power race)
and z - (1 - 1/q) rho above rho: continuous with a continuous derivative at 0 and rho.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from churn_jax.models import layers


def smoothed_relu(z: jax.Array, q: float, rho: float) -> jax.Array:
  """ReLU~ of the paper: power law z^q / (q rho^(q-1)) up to rho, linear beyond."""
  zc = jnp.clip(z, 0.0, rho)  # Clipped, so the unused power branch cannot overflow.
  power = zc ** q / (q * rho ** (q - 1))
  return jnp.where(z >= rho, z - (1.0 - 1.0 / q) * rho, power)


class PatchNet(nn.Module):
  """Patch-wise smoothed-ReLU convolution on inputs (B, P, d) (or (B, d): one patch).

  Attributes:
    num_classes: k, the number of logits.
    filters_per_class: m, the filters w_{j,r} of each class.
    q: exponent of the power-law phase (the paper takes q >= 3).
    rho: where the power law turns linear.
    init_std: sigma_0, the std of the Gaussian initialisation (the paper's effect needs it
      small against rho).
  """

  num_classes: int
  filters_per_class: int = 4
  q: float = 3.0
  rho: float = 0.1
  init_std: float = 0.01

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No BatchNorm or dropout.
    x = layers.model_input(x)
    if x.ndim == 2:
      x = x[:, None, :]
    x = x.reshape((x.shape[0], x.shape[1], -1))  # (B, P, d)
    w = self.param('filters', nn.initializers.normal(self.init_std),
                   (self.num_classes, self.filters_per_class, x.shape[-1]))
    pre = jnp.einsum('bpd,krd->bkrp', x, w)
    return jnp.sum(smoothed_relu(pre, self.q, self.rho), axis=(2, 3))
