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


def top_k_logits(logits, k: int):
  """The k largest logits of each example, (..., K) -> (..., k).

  softmax(top_k_logits(z, k)) is p restricted to its k largest entries and renormalised
  (p_top / sum p_top = softmax(z_top)), so the top-k regularisers below are the full ones applied
  to these logits. Gradients flow only to the selected logits.
  """
  if not 1 <= k <= logits.shape[-1]:
    raise ValueError(f"top_k must be in [1, {logits.shape[-1]}], got {k}")
  return jax.lax.top_k(logits, k)[0]


def top_k_entropy(logits, k: int, reduction: Optional[str] = "mean"):
  """Entropy of the renormalised top-k probabilities: H(softmax(top_k(z))).

  "Penalise only the top-k probabilities" for many classes: the mass left on the long tail of
  small probabilities does not enter the regulariser. k = K gives `entropy`.
  """
  return entropy(top_k_logits(logits, k), reduction)


def top_k_skl_to_uniform(logits, k: int, reduction: Optional[str] = "mean"):
  """SKL between the renormalised top-k probabilities and the uniform distribution over k.

  Same definition of "top-k" as `top_k_entropy`; k = K gives `skl_to_uniform`.
  """
  return skl_to_uniform(top_k_logits(logits, k), reduction)


def batch_correlation_penalty(outputs_a, outputs_b, eps: float = 1e-6):
  """Mean over classes of the squared Pearson correlation across the mini-batch.

  Anti-Distillation's de-correlation term (Shamir & Coviello 2020): outputs (B, K) of two
  members (probabilities or logits); for each class k the columns a[:, k] and b[:, k] are
  centred over the batch and

    rho_k = mean_b(a_c b_c) / (std(a_k) std(b_k)),  penalty = mean_k rho_k^2.

  The paper's abstract only says "de-correlating their outputs over mini-batches"; we square
  rho so the penalty is minimised at zero correlation and pushes from either sign (a raw rho
  would reward anti-correlation without bound). The penalty lies in [0, 1]. eps is added to
  each std in quadrature, std = sqrt(var + eps^2), so a constant column (var = 0) gives
  rho = 0 and a finite gradient (sqrt(var) + eps would give 0 * inf = NaN there).
  """
  a = outputs_a - jnp.mean(outputs_a, axis=0)
  b = outputs_b - jnp.mean(outputs_b, axis=0)
  cov = jnp.mean(a * b, axis=0)
  std_a = jnp.sqrt(jnp.mean(a * a, axis=0) + eps ** 2)
  std_b = jnp.sqrt(jnp.mean(b * b, axis=0) + eps ** 2)
  return jnp.mean((cov / (std_a * std_b)) ** 2)
