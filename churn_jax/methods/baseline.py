"""Baseline: one model per run trained with cross-entropy."""

from churn_jax.core import losses
from churn_jax.methods import base


def build(name, cfg, num_steps) -> base.Method:
  del cfg, num_steps  # The baseline has no coefficients.

  def loss(logits, labels, step, extra=None):
    del step, extra  # Plain cross-entropy.
    ce = losses.cross_entropy(logits[0], labels)
    return ce, {"ce": ce}

  return base.Method(name=name, num_members=1, loss=loss)
