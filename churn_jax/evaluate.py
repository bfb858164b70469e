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
  probability vectors, halved).
  """
  probs = np.asarray(probs, np.float32)
  labels = np.asarray(labels)
  slices = metrics.pairwise(metrics.churn_on_slices, probs, labels)
  diff = metrics.pairwise(metrics.prediction_difference, probs)
  ece = functools.partial(metrics.expected_calibration_error, num_bins=ece_bins)
  return {
      "num_runs": int(probs.shape[0]),
      "accuracy": metrics.per_run(metrics.accuracy, probs, labels),
      "churn": metrics.pairwise(metrics.churn, probs),
      "schurn": metrics.pairwise(
          functools.partial(metrics.surrogate_churn, alpha=schurn_alpha), probs),
      "churn_correct": slices["correct"],
      "churn_incorrect": slices["incorrect"],
      "ece": metrics.per_run(ece, probs, labels),
      "nll": metrics.per_run(metrics.negative_log_likelihood, probs, labels),
      "brier": metrics.per_run(metrics.brier_score, probs, labels),
      "entropy": metrics.per_run(metrics.entropy, probs),
      "confidence_gap": metrics.per_run(metrics.confidence_gap, probs),
      "pred_diff_l1": diff["l1"],
      "pred_diff_l2": diff["l2"],
      "pred_diff_relative": diff["relative"],
  }
