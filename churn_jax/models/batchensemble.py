"""BatchEnsemble (Wen, Tran & Ba 2020, "BatchEnsemble: an Alternative Approach to Efficient
Ensemble and Lifelong Learning"): E ensemble members in one set of parameters.

Every layer keeps one shared weight W and, per member i, rank-1 fast weights r_i (one per
input feature) and s_i (one per output feature), so member i's weight is W * (r_i s_i^T):

    y_i = ((x_i * r_i) W) * s_i + b_i          (b_i: member i's bias, where the layer has one)

Layout (as in Nam et al. 2021's code, cs-giung/giung2): a BE model tiles its batch E times,
member-major (rows e*B .. (e+1)*B - 1 are member e's copy); every BE layer scales member e's
rows by r_e and s_e; BatchNorm is shared and normalises over all E*B rows. The model returns
logits (B, E, K), examples first, so the trainer's per-batch predictions concatenate along the
example axis as for any model; the deployed prediction is the mean of the E members'
probabilities (`Method.deployed_probs` with `model_ensemble_size` = E).

Fast weights start at N(1, 0.5^2) (Nam et al.'s BE-4 config), member biases at 0. Convolutions
before a BatchNorm have no bias (as in the plain nets); the classifier has per-member biases.
With r = s = 1 and equal member biases a BE model computes its shared model for every member
(tests/methods/be_test.py).
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from churn_jax.models import layers, wrn


def fast_weight_init(std: float) -> Callable[..., jax.Array]:
  """N(1, std^2): members start as random rank-1 modulations of the shared weight."""
  def init(key, shape, dtype=jnp.float32):
    return 1.0 + std * jax.random.normal(key, shape, dtype)
  return init


def _per_member(x, w, ensemble_size, op):
  """op(rows of member e, w[e]) for x (E*B, ..., C) and w (E, C)."""
  shape = x.shape
  x = x.reshape((ensemble_size, shape[0] // ensemble_size) + shape[1:])
  w = w.reshape((ensemble_size, 1) + (1,) * (len(shape) - 2) + (shape[-1],))
  return op(x, w).reshape(shape)


def to_members(x, ensemble_size: int):
  """(B, ...) -> (E*B, ...): the batch tiled once per member, member-major."""
  return jnp.tile(x, (ensemble_size,) + (1,) * (x.ndim - 1))


def from_members(logits, ensemble_size: int):
  """(E*B, K) member-major -> (B, E, K)."""
  return jnp.swapaxes(logits.reshape((ensemble_size, -1) + logits.shape[1:]), 0, 1)


class _BatchEnsembleMixin:
  """The rank-1 modulation around a shared Flax layer (Dense or Conv) without its own bias."""

  def _modulated(self, x, shared_call):
    if self.use_bias:
      raise ValueError(f'{type(self).__name__}: the shared layer takes no bias; member biases '
                       f'come from ensemble_bias')
    size = self.ensemble_size
    r = self.param('fast_in', self.fast_init, (size, x.shape[-1]))
    s = self.param('fast_out', self.fast_init, (size, self.features))
    y = shared_call(_per_member(x, r, size, jnp.multiply))
    y = _per_member(y, s, size, jnp.multiply)
    if self.ensemble_bias:
      b = self.param('ensemble_bias', nn.initializers.zeros, (size, self.features))
      y = _per_member(y, b, size, jnp.add)
    return y


class BEDense(_BatchEnsembleMixin, nn.Dense):
  """Dense with shared kernel W, per-member fast weights and per-member biases.

  Input (E*B, C) member-major; the shared `kernel` keeps nn.Dense's name and shape.
  """

  use_bias: bool = False
  ensemble_size: int = 4
  ensemble_bias: bool = True
  fast_init: Callable[..., jax.Array] = fast_weight_init(0.5)

  @nn.compact
  def __call__(self, x):
    return self._modulated(x, super().__call__)


class BEConv(_BatchEnsembleMixin, nn.Conv):
  """Conv with shared kernel W and per-member fast weights; no bias by default (BN follows).

  Input (E*B, H, W, C) member-major; the shared `kernel` keeps nn.Conv's name and shape.
  """

  use_bias: bool = False
  ensemble_size: int = 4
  ensemble_bias: bool = False
  fast_init: Callable[..., jax.Array] = fast_weight_init(0.5)

  @nn.compact
  def __call__(self, x):
    return self._modulated(x, super().__call__)


class BEMLP(nn.Module):
  """The MLP (models/mlp.py) with BatchEnsemble Dense layers; logits (B, E, K).

  Attributes:
    num_classes: number of output logits per member.
    hidden: widths of the hidden layers.
    ensemble_size: E, the number of members.
    fast_weight_std: std of the N(1, std^2) fast-weight init.
  """

  num_classes: int
  hidden: Sequence[int] = (256, 256)
  ensemble_size: int = 4
  fast_weight_std: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No BatchNorm or dropout.
    size = self.ensemble_size
    dense = functools.partial(BEDense, ensemble_size=size,
                              fast_init=fast_weight_init(self.fast_weight_std))
    x = layers.model_input(x)
    x = to_members(x.reshape((x.shape[0], -1)), size)
    for i, width in enumerate(self.hidden):
      x = nn.relu(dense(width, name=f'dense_{i}')(x))
    x = dense(self.num_classes, name='logits')(x)
    return from_members(jnp.asarray(x, jnp.float32), size)


class BEWideResNet(wrn.WideResNet):
  """WRN-depth-width with BatchEnsemble convolutions and classifier (Nam et al.'s BE-4
  students); shared BatchNorm. Logits (B, E, K).

  Attributes (beyond WideResNet's):
    ensemble_size: E, the number of members.
    fast_weight_std: std of the N(1, std^2) fast-weight init.
  """

  ensemble_size: int = 4
  fast_weight_std: float = 0.5

  def _layer_constructors(self):
    init = fast_weight_init(self.fast_weight_std)
    conv = functools.partial(BEConv, ensemble_size=self.ensemble_size, fast_init=init,
                             kernel_init=layers.conv_init,
                             conv_general_dilated=layers.cpu_conv)
    dense = functools.partial(BEDense, ensemble_size=self.ensemble_size, fast_init=init)
    return conv, dense

  def _inputs(self, x: Any) -> Any:
    return to_members(x, self.ensemble_size)

  def _outputs(self, logits: Any) -> Any:
    return from_members(logits, self.ensemble_size)
