"""Churn and calibration metrics: probabilities in, scalars out.

Every function takes *probabilities* (e.g. softmax outputs), never logits:
``probs`` arrays have shape ``(N, K)`` (N examples, K classes) with
non-negative rows summing to 1, and ``labels`` are integer arrays of shape
``(N,)`` with values in ``[0, K)``. Inputs may be ``np.ndarray`` or
``jax.Array``; the computations use ``jax.numpy`` so every function can be
wrapped in ``jax.jit`` and returns ``jnp`` scalars (or dicts of them). Input
validation raises ``ValueError`` and runs only when the inputs are concrete; it
is skipped for JAX tracers (i.e. inside ``jit``), where values are unknown.
Shapes are contracts as well: chex asserts them where the jitted kernels start
(inputs) and where the public functions return (scalar results), at trace time.

Definitions follow Bhojanapalli et al. 2021, "On the Reproducibility of Neural
Network Predictions" (arXiv:2102.03349):

* Churn between models a and b is the fraction of examples on which their
  top-1 predictions differ::

      Churn(a, b) = 1/N sum_n 1[argmax_k p_a[n, k] != argmax_k p_b[n, k]].

* The surrogate churn ``SChurn_alpha`` is a smooth relaxation of churn. Each
  row is divided by its own maximum and raised to the power ``alpha``::

      SChurn_alpha(a, b) = 1/(2N) sum_n || (p_a[n] / max_k p_a[n, k])^alpha
                                         - (p_b[n] / max_k p_b[n, k])^alpha ||_1

  As ``alpha -> inf`` each normalised row tends to the one-hot vector of its
  argmax, so ``SChurn_alpha -> Churn`` when argmaxes are unique.

* Churn on slices restricts churn to the examples a reference model classifies
  correctly (resp. incorrectly); see ``churn_on_slices`` for how the two
  possible reference models are combined.

* Prediction difference (also from the paper) compares the full probability
  vectors rather than only their argmax: mean L1, mean L2 and a mean relative
  difference ``2|p_a - p_b| / (p_a + p_b)``.

* Expected calibration error (ECE) uses equal-width confidence bins, as in
  Guo et al. 2017, "On Calibration of Modern Neural Networks".

* The Brier score is the multi-class form of Brier 1950 as Nam et al. 2021
  ("Diversity Matters When Learning From Ensembles") report it: the mean over
  examples of ``sum_k (p[n, k] - 1[k = y_n])^2`` (in [0, 2]), not divided by K.

``pairwise`` and ``per_run`` summarise a metric over R replicate runs, the
setting in which churn is measured (independently trained copies of a model).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

# Rows are accepted as probabilities when their sum is within this of 1
# (float32 softmax outputs routinely miss 1 by ~1e-7; logits miss by a lot).
_ROW_SUM_TOL = 1e-3
# Entries where both probabilities are below this are ignored (count 0) by the
# relative prediction difference, which is otherwise 0/0 there.
_RELATIVE_EPS = 1e-7
# Floor for probabilities inside log() so NLL stays finite.
_NLL_CLIP = 1e-12


# ---------------------------------------------------------------------------
# Validation helpers (only run on concrete values, never on tracers).
# ---------------------------------------------------------------------------


def _is_concrete(*xs: Any) -> bool:
  """True when no argument is a JAX tracer, i.e. values can be inspected."""
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_probs(probs: Any, name: str = "probs") -> None:
  """Checks that `probs` is a non-empty (N, K) array of probability rows."""
  # Shapes are static, so they are checked even for tracers.
  shape = tuple(np.shape(probs))
  if len(shape) != 2:
    raise ValueError(
        f"{name} must be 2-D (num_examples, num_classes), got shape {shape}"
    )
  if 0 in shape:
    raise ValueError(
        f"{name} must have at least one example and one class, got shape"
        f" {shape}"
    )
  if not _is_concrete(probs):
    return
  p = np.asarray(probs, dtype=np.float64)
  negative_rows = np.any(p < 0, axis=1)
  if negative_rows.any():
    raise ValueError(
        f"{name} must hold probabilities (e.g. softmax outputs, not logits):"
        f" {int(negative_rows.sum())} of {shape[0]} rows have negative"
        f" entries (min {p.min():.6g})"
    )
  sums = p.sum(axis=1)
  deviation = np.abs(sums - 1.0)
  # `~(x <= tol)` rather than `x > tol` so that NaN rows are reported too.
  bad_rows = ~(deviation <= _ROW_SUM_TOL)
  if bad_rows.any():
    worst = np.nan if np.isnan(sums).any() else sums[np.argmax(deviation)]
    raise ValueError(
        f"{name} must hold probabilities (e.g. softmax outputs, not logits):"
        f" {int(bad_rows.sum())} of {shape[0]} rows do not sum to 1 within"
        f" {_ROW_SUM_TOL:g} (worst sum {worst:.6g})"
    )


def _check_same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
  """Checks that two arrays have identical shapes (shapes are always static)."""
  if np.shape(a) != np.shape(b):
    raise ValueError(
        f"{name_a} and {name_b} must have the same shape, got"
        f" {tuple(np.shape(a))} and {tuple(np.shape(b))}"
    )


def _check_pair(probs_a: Any, probs_b: Any) -> None:
  _check_probs(probs_a, "probs_a")
  _check_probs(probs_b, "probs_b")
  _check_same_shape(probs_a, probs_b, "probs_a", "probs_b")


def _check_labels(labels: Any, probs: Any) -> None:
  """Checks that `labels` are N integer class ids in [0, K) for (N, K) probs."""
  num_examples, num_classes = np.shape(probs)
  if np.ndim(labels) != 1 or np.shape(labels)[0] != num_examples:
    raise ValueError(
        f"labels must have shape ({num_examples},) to match probs of shape"
        f" {tuple(np.shape(probs))}, got shape {tuple(np.shape(labels))}"
    )
  concrete = _is_concrete(labels)
  # Dtypes are static, so this check also runs for tracers.
  y = np.asarray(labels) if concrete else labels
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}")
  if not concrete:
    return
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(
        f"labels must lie in [0, {num_classes}), got values in"
        f" [{y.min()}, {y.max()}]"
    )


def _check_positive(value: Any, name: str) -> None:
  if _is_concrete(value) and not float(value) > 0:
    raise ValueError(f"{name} must be > 0, got {value}")


def _assert_probs(*probs: jax.Array) -> None:
  """chex: (N, K) probabilities, all of one shape (a kernel's input contract)."""
  chex.assert_rank(list(probs), 2)
  chex.assert_equal_shape(list(probs))


def _assert_labelled(probs: jax.Array, labels: jax.Array) -> None:
  """chex: (N, K) probabilities and (N,) labels."""
  chex.assert_rank(probs, 2)
  chex.assert_shape(labels, probs.shape[:1])


def _scalar_results(fn: Callable[..., Any]) -> Callable[..., Any]:
  """chex: a public metric returns a scalar, or a dict of scalars."""
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    out = fn(*args, **kwargs)
    chex.assert_rank(jax.tree_util.tree_leaves(out), 0)
    return out
  return wrapped


def _check_num_bins(num_bins: Any) -> None:
  # Bin count sets array shapes, so it must be a Python int even under jit.
  if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)):
    raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
  if num_bins < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}")


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


# ---------------------------------------------------------------------------
# Summaries over replicate runs.
# ---------------------------------------------------------------------------


def _as_runs(probs_per_run: Any) -> list[Any]:
  """Splits a (R, N, K) array or a sequence of (N, K) arrays into runs."""
  if hasattr(probs_per_run, "ndim") and hasattr(probs_per_run, "shape"):
    if probs_per_run.ndim != 3:
      raise ValueError(
          "probs_per_run must have shape (num_runs, num_examples, num_classes),"
          f" got shape {tuple(probs_per_run.shape)}"
      )
    return [probs_per_run[i] for i in range(probs_per_run.shape[0])]
  runs = list(probs_per_run)
  for i, run in enumerate(runs[1:], start=1):
    if np.shape(run) != np.shape(runs[0]):
      raise ValueError(
          f"all runs must have the same shape, got run 0 with shape"
          f" {tuple(np.shape(runs[0]))} and run {i} with shape"
          f" {tuple(np.shape(run))}"
      )
  return runs


def _summarize(results: Sequence[Any]) -> dict[str, Any]:
  """{"mean", "std", "values"} over scalar results, recursing into dicts.

  `std` is the population standard deviation (ddof=0): the values are all the
  pairs/runs at hand, not a sample, and ddof=0 stays defined for one value.
  """
  if isinstance(results[0], Mapping):
    return {key: _summarize([r[key] for r in results]) for key in results[0]}
  values = [float(r) for r in results]
  return {
      "mean": float(np.mean(values)),
      "std": float(np.std(values, ddof=0)),
      "values": values,
  }


def pairwise(
    metric_fn: Callable[..., Any],
    probs_per_run: Any,
    labels: Any = None,
) -> dict[str, Any]:
  """Summarises a two-model metric over all unordered pairs of runs.

  `metric_fn(probs_i, probs_j)` (or `metric_fn(probs_i, probs_j, labels)` when
  `labels` is given) is evaluated for every pair i < j, in the order
  (0, 1), (0, 2), ..., (1, 2), ..., i.e. R(R-1)/2 values.

  Args:
    metric_fn: e.g. `churn`, `surrogate_churn`, `churn_on_slices`.
    probs_per_run: (R, N, K) array or a sequence of R (N, K) probability
      arrays (not logits), one per replicate run.
    labels: Optional (N,) integer labels passed as the third positional arg.

  Returns:
    {"mean": float, "std": float, "values": list[float]} with the population
    std (ddof=0) over pairs; if `metric_fn` returns a dict, a dict with the
    same keys whose values are such summaries.
  """
  runs = _as_runs(probs_per_run)
  if len(runs) < 2:
    raise ValueError(f"pairwise metrics need at least 2 runs, got {len(runs)}")
  extra = () if labels is None else (labels,)
  results = [
      metric_fn(runs[i], runs[j], *extra)
      for i in range(len(runs))
      for j in range(i + 1, len(runs))
  ]
  return _summarize(results)


def per_run(
    metric_fn: Callable[..., Any],
    probs_per_run: Any,
    labels: Any = None,
) -> dict[str, Any]:
  """Summarises a single-model metric over the R runs.

  Same conventions and return format as `pairwise` (population std, dict
  metrics give a dict of summaries), with `metric_fn(probs_r[, labels])`
  evaluated once per run, e.g. for `accuracy` or `expected_calibration_error`.
  """
  runs = _as_runs(probs_per_run)
  if not runs:
    raise ValueError("per-run metrics need at least 1 run, got 0")
  extra = () if labels is None else (labels,)
  return _summarize([metric_fn(run, *extra) for run in runs])
