"""Two models' probabilities in, a scalar (or dict of scalars) out: churn, SChurn, churn on
slices, prediction difference (definitions: churn_jax/metrics/__init__.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from churn_jax.metrics._validation import (
    _check_pair,
    _check_labels,
    _check_positive,
    _assert_probs,
    _assert_labelled,
    _scalar_results,
    _RELATIVE_EPS,
)


# ---------------------------------------------------------------------------
# Pairwise metrics (two models' probabilities).
#
# Each public function validates its (concrete) inputs, then calls a jitted
# `_*_impl`: one compiled kernel per input shape instead of op-by-op dispatch,
# which matters when `pairwise` calls a metric R(R-1)/2 times.
# ---------------------------------------------------------------------------


def _disagree(probs_a: jax.Array, probs_b: jax.Array) -> jax.Array:
  """Boolean (N,) mask of examples whose top-1 predictions differ."""
  return jnp.argmax(probs_a, axis=-1) != jnp.argmax(probs_b, axis=-1)


@jax.jit
def _churn_impl(probs_a: jax.Array, probs_b: jax.Array) -> jax.Array:
  _assert_probs(probs_a, probs_b)
  return jnp.mean(_disagree(probs_a, probs_b))


@_scalar_results
def churn(probs_a: Any, probs_b: Any) -> jax.Array:
  """Fraction of examples whose top-1 predicted class differs.

  Args:
    probs_a: (N, K) class probabilities of model a (not logits).
    probs_b: (N, K) class probabilities of model b.

  Returns:
    Scalar in [0, 1].
  """
  _check_pair(probs_a, probs_b)
  return _churn_impl(jnp.asarray(probs_a), jnp.asarray(probs_b))


def _max_normalised_power(probs: jax.Array, alpha: Any) -> jax.Array:
  """(p / max_k p)^alpha row-wise; the max entry of each row becomes 1."""
  return (probs / jnp.max(probs, axis=-1, keepdims=True)) ** alpha


@jax.jit
def _surrogate_churn_impl(
    probs_a: jax.Array, probs_b: jax.Array, alpha: jax.Array
) -> jax.Array:
  _assert_probs(probs_a, probs_b)
  diff = _max_normalised_power(probs_a, alpha) - _max_normalised_power(
      probs_b, alpha
  )
  return 0.5 * jnp.mean(jnp.sum(jnp.abs(diff), axis=-1))


@_scalar_results
def surrogate_churn(probs_a: Any, probs_b: Any, alpha: float = 1.0) -> jax.Array:
  """Surrogate churn SChurn_alpha of Bhojanapalli et al. 2021.

  ``1/(2N) sum_n ||(p_a/max p_a)^alpha - (p_b/max p_b)^alpha||_1``, each row
  normalised by its own maximum. Smooth in the probabilities; tends to `churn`
  as ``alpha -> inf`` when argmaxes are unique.

  Args:
    probs_a: (N, K) class probabilities of model a (not logits).
    probs_b: (N, K) class probabilities of model b.
    alpha: Positive sharpness exponent (may be traced; not recompiled per
      value).

  Returns:
    Non-negative scalar (at most K/2); 0 when the max-normalised rows agree.
  """
  _check_pair(probs_a, probs_b)
  _check_positive(alpha, "alpha")
  return _surrogate_churn_impl(
      jnp.asarray(probs_a), jnp.asarray(probs_b), alpha
  )


def _conditional_churn(
    disagree: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Churn among examples where `mask` holds, and whether any example does."""
  count = jnp.sum(mask)
  rate = jnp.sum(disagree & mask) / jnp.maximum(count, 1)
  return rate, count > 0


def _average_nonempty(
    rates: Sequence[jax.Array], nonempty: Sequence[jax.Array]
) -> jax.Array:
  """Mean of the rates whose slice is non-empty; 0.0 if all are empty."""
  total = sum(jnp.where(ok, r, 0.0) for r, ok in zip(rates, nonempty))
  n = sum(ok.astype(jnp.int32) for ok in nonempty)
  return jnp.where(n > 0, total / jnp.maximum(n, 1), 0.0)


@jax.jit
def _churn_on_slices_impl(
    probs_a: jax.Array, probs_b: jax.Array, labels: jax.Array
) -> dict[str, jax.Array]:
  _assert_probs(probs_a, probs_b)
  _assert_labelled(probs_a, labels)
  disagree = _disagree(probs_a, probs_b)
  right_a = jnp.argmax(probs_a, axis=-1) == labels
  right_b = jnp.argmax(probs_b, axis=-1) == labels
  out = {}
  for key, mask_a, mask_b in (
      ("correct", right_a, right_b),
      ("incorrect", ~right_a, ~right_b),
  ):
    rate_a, ok_a = _conditional_churn(disagree, mask_a)
    rate_b, ok_b = _conditional_churn(disagree, mask_b)
    out[key] = _average_nonempty((rate_a, rate_b), (ok_a, ok_b))
  return out


@_scalar_results
def churn_on_slices(
    probs_a: Any, probs_b: Any, labels: Any
) -> dict[str, jax.Array]:
  """Churn restricted to examples a reference model gets right / wrong.

  For the ordering (a, b), "correct" is the churn among the examples model a
  classifies correctly, and "incorrect" the churn among those it misclassifies.
  Because that depends on which model is the reference, the same quantity is
  also computed for the ordering (b, a) and the two are averaged, so the result
  is symmetric in a and b. An ordering whose slice is empty (e.g. model a is
  right on every example, so its "incorrect" slice is empty) is left out of
  the average for that slice; if the slice is empty for both orderings the
  value is 0.0. The result is therefore never NaN.

  Args:
    probs_a: (N, K) class probabilities of model a (not logits).
    probs_b: (N, K) class probabilities of model b.
    labels: (N,) integer labels in [0, K).

  Returns:
    {"correct": scalar, "incorrect": scalar}, each in [0, 1].
  """
  _check_pair(probs_a, probs_b)
  _check_labels(labels, probs_a)
  return _churn_on_slices_impl(
      jnp.asarray(probs_a), jnp.asarray(probs_b), jnp.asarray(labels)
  )


@jax.jit
def _prediction_difference_impl(
    probs_a: jax.Array, probs_b: jax.Array
) -> dict[str, jax.Array]:
  _assert_probs(probs_a, probs_b)
  diff = jnp.abs(probs_a - probs_b)
  both_tiny = (probs_a < _RELATIVE_EPS) & (probs_b < _RELATIVE_EPS)
  # Replace the denominator before dividing so no NaN/inf is ever produced
  # (also keeps gradients finite under jnp.where).
  denom = jnp.where(both_tiny, 1.0, probs_a + probs_b)
  relative = jnp.where(both_tiny, 0.0, 2.0 * diff / denom)
  return {
      "l1": jnp.mean(jnp.sum(diff, axis=-1)),
      "l2": jnp.mean(jnp.sqrt(jnp.sum(diff**2, axis=-1))),
      "relative": jnp.mean(relative),
  }


@_scalar_results
def prediction_difference(probs_a: Any, probs_b: Any) -> dict[str, jax.Array]:
  """Distances between the full probability vectors of two models.

  Returns a dict with
    * "l1": ``mean_n sum_k |p_a - p_b|`` (in [0, 2]),
    * "l2": ``mean_n ||p_a - p_b||_2``,
    * "relative": mean over all N*K entries of ``2|p_a - p_b| / (p_a + p_b)``
      (in [0, 2]); an entry where both probabilities are below 1e-7 counts as
      0, since the ratio is numerically meaningless (0/0) there.

  Args:
    probs_a: (N, K) class probabilities of model a (not logits).
    probs_b: (N, K) class probabilities of model b.
  """
  _check_pair(probs_a, probs_b)
  return _prediction_difference_impl(jnp.asarray(probs_a), jnp.asarray(probs_b))
