"""One model's probabilities (and labels) in, a scalar out: accuracy, NLL, entropy, confidence
gap, ECE, Brier score."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from churn_jax.metrics._validation import (
    _check_probs,
    _check_labels,
    _assert_probs,
    _assert_labelled,
    _scalar_results,
    _check_num_bins,
    _NLL_CLIP,
)


# ---------------------------------------------------------------------------
# Single-model metrics.
# ---------------------------------------------------------------------------


@jax.jit
def _accuracy_impl(probs: jax.Array, labels: jax.Array) -> jax.Array:
  _assert_labelled(probs, labels)
  return jnp.mean(jnp.argmax(probs, axis=-1) == labels)


@_scalar_results
def accuracy(probs: Any, labels: Any) -> jax.Array:
  """Top-1 accuracy of (N, K) class probabilities against (N,) labels."""
  _check_probs(probs)
  _check_labels(labels, probs)
  return _accuracy_impl(jnp.asarray(probs), jnp.asarray(labels))


@jax.jit
def _nll_impl(probs: jax.Array, labels: jax.Array) -> jax.Array:
  _assert_labelled(probs, labels)
  true_p = jnp.take_along_axis(
      probs, labels[:, None].astype(jnp.int32), axis=-1
  )[:, 0]
  return -jnp.mean(jnp.log(jnp.clip(true_p, _NLL_CLIP, None)))


@_scalar_results
def negative_log_likelihood(probs: Any, labels: Any) -> jax.Array:
  """Mean negative log probability of the true label.

  Probabilities (not logits) are clipped below at 1e-12 so a confidently wrong
  prediction gives a large but finite loss (at most ~27.6 nats).
  """
  _check_probs(probs)
  _check_labels(labels, probs)
  return _nll_impl(jnp.asarray(probs), jnp.asarray(labels))


@jax.jit
def _entropy_impl(probs: jax.Array) -> jax.Array:
  _assert_probs(probs)
  # entr(p) = -p log p with the 0 log 0 = 0 convention built in.
  return jnp.mean(jnp.sum(jax.scipy.special.entr(probs), axis=-1))


@_scalar_results
def entropy(probs: Any) -> jax.Array:
  """Mean predictive entropy in nats of (N, K) probabilities; 0*log(0) = 0."""
  _check_probs(probs)
  return _entropy_impl(jnp.asarray(probs))


@jax.jit
def _confidence_gap_impl(probs: jax.Array) -> jax.Array:
  _assert_probs(probs)
  if probs.shape[-1] < 2:  # static shape: fine under jit
    return jnp.mean(probs[:, 0])
  top2 = jax.lax.top_k(probs, 2)[0]
  return jnp.mean(top2[:, 0] - top2[:, 1])


@_scalar_results
def confidence_gap(probs: Any) -> jax.Array:
  """Mean over examples of top-1 minus top-2 probability (probabilities in).

  With a single class (K = 1) the second probability is taken as 0.
  """
  _check_probs(probs)
  return _confidence_gap_impl(jnp.asarray(probs))


@functools.partial(jax.jit, static_argnames="num_bins")
def _ece_impl(probs: jax.Array, labels: jax.Array, num_bins: int) -> jax.Array:
  _assert_labelled(probs, labels)
  confidence = jnp.max(probs, axis=-1)
  correct = (jnp.argmax(probs, axis=-1) == labels).astype(confidence.dtype)
  # Bin b covers (b/B, (b+1)/B]: ceil(conf * B) - 1, with conf = 0 clipped
  # into the first bin and conf = 1 landing in the last one.
  bin_index = jnp.clip(
      jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1
  )
  # |B_b|/N * |acc_b - conf_b| = |sum_{n in B_b} (correct_n - conf_n)| / N.
  gap_per_bin = jax.ops.segment_sum(
      correct - confidence, bin_index, num_segments=num_bins
  )
  return jnp.sum(jnp.abs(gap_per_bin)) / confidence.shape[0]


@_scalar_results
def expected_calibration_error(
    probs: Any, labels: Any, num_bins: int = 15
) -> jax.Array:
  """Expected calibration error with equal-width top-1 confidence bins.

  Confidence is ``max_k p[n, k]``. The interval [0, 1] is split into
  `num_bins` equal-width bins ``(lo, hi]`` (the first bin also contains 0), and
  ``ECE = sum_b |B_b| / N * |acc_b - conf_b|``, where ``acc_b`` and ``conf_b``
  are the accuracy and mean confidence of the examples in bin b. Empty bins
  contribute 0.

  Args:
    probs: (N, K) class probabilities (not logits).
    labels: (N,) integer labels in [0, K).
    num_bins: Number of bins; a Python int (it fixes array shapes, so mark it
      static when jitting a caller).

  Returns:
    Scalar in [0, 1].
  """
  _check_probs(probs)
  _check_labels(labels, probs)
  _check_num_bins(num_bins)
  return _ece_impl(jnp.asarray(probs), jnp.asarray(labels), int(num_bins))


@jax.jit
def _brier_impl(probs: jax.Array, labels: jax.Array) -> jax.Array:
  _assert_labelled(probs, labels)
  one_hot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
  return jnp.mean(jnp.sum((probs - one_hot) ** 2, axis=-1))


@_scalar_results
def brier_score(probs: Any, labels: Any) -> jax.Array:
  """Multi-class Brier score: mean over examples of ``sum_k (p_k - onehot_k)^2``.

  The sum over the K classes is not divided by K (Brier 1950; the form Nam et al. 2021 report
  and their code computes), so a one-hot correct prediction scores 0, a one-hot wrong one 2,
  and the uniform prediction ``1 - 1/K``. Lower is better; probabilities in, not logits.

  Args:
    probs: (N, K) class probabilities.
    labels: (N,) integer labels in [0, K).

  Returns:
    Scalar in [0, 2].
  """
  _check_probs(probs)
  _check_labels(labels, probs)
  return _brier_impl(jnp.asarray(probs), jnp.asarray(labels))
