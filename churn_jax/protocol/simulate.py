"""Simulated studies for measuring a verdict's error rates (benchmarks/stats_calibration.py and
tests/protocol/calibration_test.py): two methods, R runs each, on one test set per comparison.

A run's logits are the problem's own (one true-class margin per example, which makes examples
easy or hard) plus three kinds of run noise, so runs vary as trained runs do, not as coin flips:
  - per-example noise (which examples flip between runs: churn),
  - per-run offsets shared by a cluster of examples (a run is better on some sub-population:
    pair churn and run accuracy vary more than binomially, and pairs sharing a run correlate),
  - a per-run quality shift of the true class (run accuracy varies).
Run r of the method and run r of the reference share a fraction `shared` of their noise, as
runs sharing seeds do. Effects: "churn" scales the method's run noise by (1 - size) (its runs
agree more), "accuracy" adds `size` to its true-class margin; None is the null (one and the
same distribution). Metrics are numpy re-implementations of evaluate.summarize's
(tests/protocol/calibration_test.py checks they agree), vectorised over simulations.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

PER_RUN = ("accuracy", "ece", "nll", "brier")
PAIR = ("churn", "schurn", "churn_correct", "churn_incorrect", "pred_diff_l1")
EFFECTS = (None, "churn", "accuracy")


def sample_logits(rng: np.random.Generator, num_sims: int, num_runs: int, *,
                 num_examples: int = 2000, num_classes: int = 10,
                 effect: Optional[str] = None, size: float = 0.0, shared: float = 0.3,
                 noise: float = 0.25, cluster_noise: float = 0.15, quality_noise: float = 0.05,
                 num_clusters: int = 20, margin: Tuple[float, float] = (5.0, 2.5)
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """Logits (S, 2, R, N, K) float32 (index 1 = method, 0 = reference), labels (S, N)."""
  if effect not in EFFECTS:
    raise ValueError(f"effect must be one of {EFFECTS}, got {effect!r}")
  s, r, n, k = num_sims, num_runs, num_examples, num_classes
  labels = rng.integers(0, k, size=(s, n))
  onehot = np.eye(k, dtype=np.float32)[labels]  # (S, N, K)
  def normal(shape, scale):
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= scale
    return out

  margin = margin[0] + normal((s, n, 1), margin[1])
  base = normal((s, n, k), 1.0)
  base += margin * onehot
  cluster = rng.integers(0, num_clusters, size=(s, n))

  def run_noise(shape_tail, scale):  # In place: these arrays are the bulk of the time.
    out = normal((s, 2, r) + shape_tail, scale * np.sqrt(1 - shared))
    if shared:
      out += normal((s, 1, r) + shape_tail, scale * np.sqrt(shared))
    return out

  logits = run_noise((n, k), noise)
  offsets = run_noise((num_clusters, k), cluster_noise)  # (S, 2, R, C, K)
  logits += offsets[np.arange(s)[:, None], :, :, cluster].transpose(0, 2, 3, 1, 4)
  logits += run_noise((1, 1), quality_noise) * onehot[:, None, None]
  if effect == "churn":
    logits[:, 1] *= 1 - size
  logits += base[:, None, None]
  if effect == "accuracy":
    logits[:, 1] += size * onehot[:, None]
  return logits, labels


def softmax(logits: np.ndarray) -> np.ndarray:
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _ece(probs, labels, num_bins=15):
  conf = probs.max(-1)
  correct = (probs.argmax(-1) == labels).astype(np.float64)
  bins = np.clip(np.ceil(conf * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
  units = int(np.prod(conf.shape[:-1]))
  flat = bins.reshape(units, -1) + num_bins * np.arange(units)[:, None]
  gaps = np.bincount(flat.ravel(), (correct - conf).reshape(units, -1).ravel(),
                     minlength=units * num_bins).reshape(units, num_bins)
  return (np.abs(gaps).sum(-1) / conf.shape[-1]).reshape(conf.shape[:-1])


SOFT = ("ece", "nll", "brier", "schurn", "pred_diff_l1")


def metric_values(logits: np.ndarray, labels: np.ndarray,
                  metrics: Sequence[str]) -> Dict[str, np.ndarray]:
  """metric -> (S, 2, R) per-run values or (S, 2, P) pair values in metrics.pairwise order."""
  num_runs = logits.shape[2]
  rows, cols = np.triu_indices(num_runs, k=1)
  lab = labels[:, None, None, :]
  pred = logits.argmax(-1)
  right = pred == lab
  out = {}
  if "accuracy" in metrics:
    out["accuracy"] = right.mean(-1)
  probs = softmax(logits) if any(m in SOFT for m in metrics) else None
  if "ece" in metrics:
    out["ece"] = _ece(probs, lab)
  if "nll" in metrics or "brier" in metrics:
    p_true = np.take_along_axis(probs, lab[..., None], axis=-1)[..., 0]
  if "nll" in metrics:
    out["nll"] = -np.log(np.maximum(p_true, np.finfo(np.float32).tiny)).mean(-1)
  if "brier" in metrics:
    out["brier"] = ((probs ** 2).sum(-1) - 2 * p_true + 1).mean(-1)
  disagree = pred[:, :, rows] != pred[:, :, cols]  # (S, 2, P, N)
  if "churn" in metrics:
    out["churn"] = disagree.mean(-1)
  if "churn_correct" in metrics or "churn_incorrect" in metrics:
    for key, mask in (("churn_correct", right), ("churn_incorrect", ~right)):
      rates = []
      for side in (rows, cols):
        m = mask[:, :, side]
        count = m.sum(-1)
        rates.append(((disagree & m).sum(-1) / np.maximum(count, 1), count > 0))
      (ra, oka), (rb, okb) = rates
      total = np.where(oka, ra, 0.0) + np.where(okb, rb, 0.0)
      out[key] = total / np.maximum(oka.astype(int) + okb, 1)
  if "schurn" in metrics:
    norm = probs / probs.max(-1, keepdims=True)
    out["schurn"] = 0.5 * np.abs(norm[:, :, rows] - norm[:, :, cols]).sum(-1).mean(-1)
  if "pred_diff_l1" in metrics:
    out["pred_diff_l1"] = np.abs(probs[:, :, rows] - probs[:, :, cols]).sum(-1).mean(-1)
  return out


def entries(values: Dict[str, np.ndarray]) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
  """(method entry, reference entry) per simulation, shaped as results.json holds them."""
  some = next(iter(values.values()))
  per_run = [k for k in values if k in PER_RUN]
  num_runs = values[per_run[0]].shape[-1] if per_run else int(
      round((1 + np.sqrt(1 + 8 * some.shape[-1])) / 2))
  out = []
  for s in range(some.shape[0]):
    pair = []
    for side in (1, 0):
      entry = {"num_runs": num_runs}
      for key, arr in values.items():
        v = arr[s, side].astype(np.float64)
        entry[key] = {"mean": float(v.mean()), "std": float(v.std()), "values": v.tolist()}
      pair.append(entry)
    out.append(tuple(pair))
  return out


def simulate(rng: np.random.Generator, num_sims: int, num_runs: int,
             metrics: Sequence[str] = ("accuracy", "churn"), chunk: int = 25,
             **kwargs) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
  """`num_sims` (method, reference) entry pairs; kwargs go to sample_logits."""
  out = []
  for start in range(0, num_sims, chunk):
    logits, labels = sample_logits(rng, min(chunk, num_sims - start), num_runs, **kwargs)
    out += entries(metric_values(logits, labels, metrics))
  return out
