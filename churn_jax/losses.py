"""Pure per-example losses and regularisers on logits (no model, optimizer or data code).

Every function takes logits of shape (..., K) and returns a per-example array of shape (...)
when `reduction=None`, or its mean (`"mean"`) or sum (`"sum"`). Probabilities are computed with
log-softmax for numerical stability. Formulas follow Bhojanapalli et al. 2021 (eqs. 6, 7, 9).
"""

from typing import Optional

import jax
import jax.numpy as jnp
import optax


def _reduce(x: jax.Array, reduction: Optional[str]) -> jax.Array:
  if reduction is None or reduction == "none":
    return x
  if reduction == "mean":
    return jnp.mean(x)
  if reduction == "sum":
    return jnp.sum(x)
  raise ValueError(f"unknown reduction {reduction!r}; use 'mean', 'sum' or None")


def cross_entropy(logits, labels, reduction: Optional[str] = "mean"):
  """Softmax cross-entropy with integer labels."""
  return _reduce(optax.softmax_cross_entropy_with_integer_labels(logits, labels), reduction)


def soft_cross_entropy(target_probs, logits, reduction: Optional[str] = "mean"):
  """CE(target, softmax(logits)) = -sum_k target_k log p_k (Anil et al. 2018's distillation term)."""
  return _reduce(-jnp.sum(target_probs * jax.nn.log_softmax(logits), axis=-1), reduction)


def entropy(logits, reduction: Optional[str] = "mean"):
  """Shannon entropy H(softmax(logits)) in nats."""
  logp = jax.nn.log_softmax(logits)
  return _reduce(-jnp.sum(jnp.exp(logp) * logp, axis=-1), reduction)


def kl_divergence(logits_p, logits_q, reduction: Optional[str] = "mean"):
  """KL(p || q) with p = softmax(logits_p), q = softmax(logits_q)."""
  logp = jax.nn.log_softmax(logits_p)
  logq = jax.nn.log_softmax(logits_q)
  return _reduce(jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1), reduction)


def symmetric_kl(logits_a, logits_b, reduction: Optional[str] = "mean"):
  """KL(p_a || p_b) + KL(p_b || p_a): the co-distillation distance of eq. (9)."""
  return _reduce(kl_divergence(logits_a, logits_b, None) + kl_divergence(logits_b, logits_a, None),
                 reduction)


def skl_to_uniform(logits, reduction: Optional[str] = "mean"):
  """Symmetric KL between softmax(logits) and the uniform distribution over K classes.

  KL(p||u) + KL(u||p) = sum_k (p_k - 1/K) (log p_k + log K).
  """
  k = logits.shape[-1]
  logp = jax.nn.log_softmax(logits)
  return _reduce(jnp.sum((jnp.exp(logp) - 1.0 / k) * (logp + jnp.log(k)), axis=-1), reduction)


def minimum_entropy_objective(logits, labels, beta, reduction: Optional[str] = "mean"):
  """Eq. (6): (1 - beta) * CE + beta * H(p), a convex combination so the scale matches CE."""
  per_example = ((1.0 - beta) * cross_entropy(logits, labels, None)
                 + beta * entropy(logits, None))
  return _reduce(per_example, reduction)


def skl_uniform_objective(logits, labels, beta, reduction: Optional[str] = "mean"):
  """Eq. (7): (1 - beta) * CE - beta * SKL(p, uniform)."""
  per_example = ((1.0 - beta) * cross_entropy(logits, labels, None)
                 - beta * skl_to_uniform(logits, None))
  return _reduce(per_example, reduction)
