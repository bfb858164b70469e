"""The user's method: two members pulled together by the squared distance of their probabilities.

A churn-reduction method is a builder `build(name, cfg, num_steps) -> churn_jax.Method` with a
pure loss over one run's member logits (M, B, K); the trainer maps it over runs and sums.
"""

import jax
import jax.numpy as jnp
import optax

from churn_jax.methods.base import Method


def build(name, cfg, num_steps):
  """Cross-entropy of both members + beta * mean over examples of ||p_0 - p_1||^2.

  Probabilities, not logits: the penalty stays bounded (<= 2), so it cannot blow up the step.
  """
  del num_steps  # A constant coefficient: no schedule.
  beta = float(cfg.get("beta", 0.1))

  def loss(logits, labels, step, extra=None):
    del step, extra
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels[None]).mean(axis=1)
    probs = jax.nn.softmax(logits, axis=-1)
    match = jnp.mean(jnp.sum((probs[0] - probs[1]) ** 2, axis=-1))
    return ce.sum() + beta * match, {"ce": ce.mean(), "prob_match": match, "coef/beta": beta}

  return Method(name=name, num_members=2, loss=loss, training_cost=2.0)
