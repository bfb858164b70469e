"""Churn study metrics of one method from the deployed test probabilities of every run."""

from typing import Any, Dict

import numpy as np

from churn_jax import metrics


def _summary(values) -> Dict[str, Any]:
  values = [float(v) for v in values]
  return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def summarize(probs: np.ndarray, labels: np.ndarray, schurn_alpha: float = 1.0,
              ece_bins: int = 15) -> Dict[str, Any]:
  """probs: deployed probabilities (R, N, K) of R runs; labels (N,).

  Per-run metrics (accuracy, ECE, NLL, entropy, confidence gap) are summarised over runs;
  churn-type metrics over all R(R-1)/2 run pairs. All values are fractions, not percent.
  """
  probs = np.asarray(probs, np.float32)
  labels = np.asarray(labels)
  per_run = lambda fn: _summary(fn(p, labels) for p in probs)
  slices = metrics.pairwise(metrics.churn_on_slices, probs, labels)
  diff = metrics.pairwise(metrics.prediction_difference, probs)
  return {
      "num_runs": int(probs.shape[0]),
      "accuracy": per_run(metrics.accuracy),
      "churn": metrics.pairwise(metrics.churn, probs),
      "schurn": metrics.pairwise(
          lambda a, b: metrics.surrogate_churn(a, b, alpha=schurn_alpha), probs),
      "churn_correct": slices["correct"],
      "churn_incorrect": slices["incorrect"],
      "ece": per_run(lambda p, y: metrics.expected_calibration_error(p, y, num_bins=ece_bins)),
      "nll": per_run(metrics.negative_log_likelihood),
      "entropy": _summary(metrics.entropy(p) for p in probs),
      "confidence_gap": _summary(metrics.confidence_gap(p) for p in probs),
      "pred_diff_l1": diff["l1"],
      "pred_diff_l2": diff["l2"],
      "pred_diff_relative": diff["relative"],
  }
