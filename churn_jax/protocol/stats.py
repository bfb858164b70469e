"""Is a difference against the baseline more than noise? Bootstrap over runs, Welch's t-test.

Churn-type metrics are stored per pair of runs (metrics.pairwise, order (0,1), (0,2), ...,
(1,2), ...); pairs share runs, so they are not independent samples. The bootstrap therefore
resamples runs, not pairs: a draw picks R runs with replacement and averages the metric over
the pairs of distinct drawn runs. Per-run metrics (accuracy, entropy, ...) resample their
values directly, and Welch's t-test (unequal variances) compares them.
"""

import math
import warnings
from typing import Any, Dict, Optional

import numpy as np
from scipy import stats as sp_stats


def pair_matrix(values, num_runs: int) -> np.ndarray:
  """(R, R) symmetric matrix of pair values listed as metrics.pairwise lists them."""
  out = np.full((num_runs, num_runs), np.nan)
  rows, cols = np.triu_indices(num_runs, k=1)
  out[rows, cols] = out[cols, rows] = np.asarray(values, np.float64)
  return out


# Metrics that evaluate.summarize computes over pairs of runs (the rest are per run).
PAIRWISE = ("churn", "schurn", "churn_correct", "churn_incorrect", "pred_diff_l1",
            "pred_diff_l2", "pred_diff_relative")


def _draws(summary: Dict[str, Any], pairwise: bool, num_runs: int, rng,
           num_samples: int) -> np.ndarray:
  """Bootstrap means of the metric over `num_samples` resamplings of the runs."""
  idx = rng.integers(0, num_runs, size=(num_samples, num_runs))
  if not pairwise:
    return np.asarray(summary["values"], np.float64)[idx].mean(axis=1)
  matrix = pair_matrix(summary["values"], num_runs)
  out = np.empty(num_samples)
  upper = np.triu(np.ones((num_runs, num_runs), bool), k=1)
  for s in range(num_samples):
    i = idx[s]
    valid = upper & (i[:, None] != i[None, :])  # Two draws of one run are not a pair.
    out[s] = matrix[np.ix_(i, i)][valid].mean() if valid.any() else np.nan
  return out


def bootstrap_difference(entry: Dict[str, Any], baseline: Dict[str, Any], metric: str,
                         num_samples: int = 2000, level: float = 0.95,
                         seed: int = 0) -> Dict[str, float]:
  """Mean of `metric` in `entry` minus the baseline's, with a percentile bootstrap interval."""
  rng = np.random.default_rng(seed)
  pairwise = metric in PAIRWISE
  a = _draws(entry[metric], pairwise, int(entry["num_runs"]), rng, num_samples)
  b = _draws(baseline[metric], pairwise, int(baseline["num_runs"]), rng, num_samples)
  diff = (a - b)[np.isfinite(a - b)]
  tail = 100 * (1 - level) / 2
  return {"diff": float(entry[metric]["mean"] - baseline[metric]["mean"]),
          "low": float(np.percentile(diff, tail)), "high": float(np.percentile(diff, 100 - tail)),
          "level": level}


def welch(entry: Dict[str, Any], baseline: Dict[str, Any], metric: str) -> Optional[float]:
  """Two-sided p-value of Welch's t-test on per-run values; None for pair metrics."""
  if metric in PAIRWISE:
    return None
  a, b = np.asarray(entry[metric]["values"]), np.asarray(baseline[metric]["values"])
  if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
    return None
  with warnings.catch_warnings():  # Near-constant values warn about precision; p is still valid.
    warnings.simplefilter("ignore", RuntimeWarning)
    p = float(sp_stats.ttest_ind(a, b, equal_var=False).pvalue)
  return None if math.isnan(p) else p


def verdict(interval: Dict[str, float], lower_is_better: bool) -> str:
  """'held' when the interval excludes 0 on the good side, 'reversed' on the bad side,
  'cannot tell' when it contains 0."""
  if interval["low"] > 0:
    return "reversed" if lower_is_better else "held"
  if interval["high"] < 0:
    return "held" if lower_is_better else "reversed"
  return "cannot tell"
