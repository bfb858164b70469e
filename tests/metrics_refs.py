"""Random inputs and plain-numpy references (loops, float64) for the metrics tests, written
independently of churn_jax.metrics."""

import numpy as np


SHAPES = ((1, 2), (7, 3), (40, 10))


def random_probs(rng, n, k, concentration=0.5):
  # Cast once to float32 so implementation and reference see the same values.
  return rng.dirichlet(np.full(k, concentration), size=n).astype(np.float32)


def random_labels(rng, n, k):
  return rng.integers(0, k, size=n).astype(np.int32)


def peaked_probs(rng, n, k, top=0.6):
  """Rows with a unique, well-separated max (`top`) at a random class."""
  probs = np.zeros((n, k))
  top_idx = rng.integers(0, k, size=n)
  for i in range(n):
    rest = rng.dirichlet(np.ones(k - 1)) * (1.0 - top)
    probs[i] = np.insert(rest, top_idx[i], top)
  return probs.astype(np.float32)


# ---------------------------------------------------------------------------
# Plain-numpy references (loops, float64) written independently of churn_jax.metrics.
# ---------------------------------------------------------------------------


def ref_churn(pa, pb):
  pa, pb = np.float64(pa), np.float64(pb)
  return np.mean([np.argmax(a) != np.argmax(b) for a, b in zip(pa, pb)])


def ref_surrogate_churn(pa, pb, alpha):
  total = 0.0
  for a, b in zip(np.float64(pa), np.float64(pb)):
    total += np.sum(np.abs((a / a.max()) ** alpha - (b / b.max()) ** alpha))
  return total / (2 * len(pa))


def ref_slice_rate(ref, other, labels, want_correct):
  """Churn among examples where `ref` is (in)correct, or None if none are."""
  idx = [
      n for n in range(len(labels))
      if (np.argmax(ref[n]) == labels[n]) == want_correct
  ]
  if not idx:
    return None
  return np.mean([np.argmax(ref[n]) != np.argmax(other[n]) for n in idx])


def ref_churn_on_slices(pa, pb, labels):
  out = {}
  for key, want in (("correct", True), ("incorrect", False)):
    rates = [
        r for r in (ref_slice_rate(pa, pb, labels, want),
                    ref_slice_rate(pb, pa, labels, want))
        if r is not None
    ]
    out[key] = np.mean(rates) if rates else 0.0
  return out


def ref_prediction_difference(pa, pb):
  pa, pb = np.float64(pa), np.float64(pb)
  l1, l2, rel = [], [], []
  for a, b in zip(pa, pb):
    l1.append(np.sum(np.abs(a - b)))
    l2.append(np.sqrt(np.sum((a - b) ** 2)))
    for x, y in zip(a, b):
      rel.append(0.0 if (x < 1e-7 and y < 1e-7) else 2 * abs(x - y) / (x + y))
  return {"l1": np.mean(l1), "l2": np.mean(l2), "relative": np.mean(rel)}


def ref_ece(probs, labels, num_bins):
  probs = np.float64(probs)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  conf = probs.max(axis=1)
  correct = probs.argmax(axis=1) == labels
  ece = 0.0
  for b in range(num_bins):
    lo, hi = edges[b], edges[b + 1]
    in_bin = (conf > lo) & (conf <= hi)
    if b == 0:
      in_bin |= conf == 0.0
    if in_bin.any():
      ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
  return ece


def ref_nll(probs, labels):
  return -np.mean(
      [np.log(max(float(p[y]), 1e-12)) for p, y in zip(probs, labels)])


def ref_entropy(probs):
  return np.mean(
      [-sum(float(x) * np.log(float(x)) for x in p if x > 0) for p in probs])


def ref_confidence_gap(probs):
  return np.mean([np.sort(p)[-1] - np.sort(p)[-2] for p in np.float64(probs)])


def ref_brier(probs, labels):
  return np.mean([sum((float(p[k]) - (k == y)) ** 2 for k in range(len(p)))
                  for p, y in zip(probs, labels)])


TOL = dict(rtol=1e-5, atol=1e-6)
