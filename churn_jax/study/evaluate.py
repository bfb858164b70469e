"""Churn study metrics of one method from the deployed test probabilities of every run."""

import functools
from typing import Any, Dict

import numpy as np

from churn_jax import metrics


def summarize(probs: np.ndarray, labels: np.ndarray, schurn_alpha: float = 1.0,
              ece_bins: int = 15) -> Dict[str, Any]:
  """probs: deployed probabilities (R, N, K) of R runs; labels (N,).

  Per-run metrics (accuracy, ECE, NLL, entropy, confidence gap) are summarised over runs;
  churn-type metrics over all R(R-1)/2 run pairs. All values are fractions, not percent
  (SChurn can exceed 1 for low-confidence models: it is an L1 distance of max-normalised
  probability vectors, halved). Churn on a slice is undefined (None, "n/a" in tables) for a
  pair whose two runs both leave that slice empty; its mean and std are over the defined
  pairs, None if there are none.
  """
  probs = np.asarray(probs, np.float32)
  labels = np.asarray(labels)
  slices = metrics.pairwise(metrics.churn_on_slices, probs, labels)
  right = probs.argmax(-1) == labels[None]  # (R, N)
  diff = metrics.pairwise(metrics.prediction_difference, probs)
  ece = functools.partial(metrics.expected_calibration_error, num_bins=ece_bins)
  return {
      "num_runs": int(probs.shape[0]),
      "accuracy": metrics.per_run(metrics.accuracy, probs, labels),
      "churn": metrics.pairwise(metrics.churn, probs),
      "schurn": metrics.pairwise(
          functools.partial(metrics.surrogate_churn, alpha=schurn_alpha), probs),
      "churn_correct": _defined_pairs(slices["correct"], right.any(axis=1)),
      "churn_incorrect": _defined_pairs(slices["incorrect"], (~right).any(axis=1)),
      "ece": metrics.per_run(ece, probs, labels),
      "nll": metrics.per_run(metrics.negative_log_likelihood, probs, labels),
      "brier": metrics.per_run(metrics.brier_score, probs, labels),
      "entropy": metrics.per_run(metrics.entropy, probs),
      "confidence_gap": metrics.per_run(metrics.confidence_gap, probs),
      "pred_diff_l1": diff["l1"],
      "pred_diff_l2": diff["l2"],
      "pred_diff_relative": diff["relative"],
  }


def _defined_pairs(summary: Dict[str, Any], nonempty: np.ndarray) -> Dict[str, Any]:
  """Marks pairs whose slice is empty in both runs as undefined (None) and re-summarises."""
  num_runs = len(nonempty)
  pairs = [(i, j) for i in range(num_runs) for j in range(i + 1, num_runs)]
  values = [v if nonempty[i] or nonempty[j] else None
            for v, (i, j) in zip(summary["values"], pairs)]
  defined = [v for v in values if v is not None]
  if not defined:
    return {"mean": None, "std": None, "values": values}
  return {"mean": float(np.mean(defined)), "std": float(np.std(defined)), "values": values}
