"""A metric summarised over R replicate runs: all pairs (`pairwise`) or each run (`per_run`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np



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
