"""The pre-registered verdicts of docs/MULTIVIEW.md from a multiview_slices.py --out file.

  python experiments/multiview_prereg.py prereg.json

The rule written before the run: per-run accuracy on the single-view test slice, each method
against `baseline` with churn_jax.protocol.stats.difference (paired jackknife t over runs,
95%), Holm over the methods. The same for churn on the single-view slice is printed below it
as a description (it was not pre-registered).
"""

import json
import sys

import numpy as np

from churn_jax.protocol import stats

CLAIMED = ("ensemble4", "ens_distill", "self_distill")  # Each predicted "held".


def entries(values, slice_name: str):
  """results.json-style entries (num_runs, accuracy, churn) of each method on one slice."""
  out = {}
  for name, per_method in values["methods"].items():
    acc = np.asarray(per_method[slice_name]["accuracy"], np.float64)
    # multiview_slices.py writes the pairs i < j row by row: metrics.pairwise's order.
    pairs = np.asarray(per_method[slice_name]["churn_pairs"], np.float64)
    out[name] = {"num_runs": len(acc),
                 "accuracy": {"mean": float(acc.mean()), "values": acc.tolist()},
                 "churn": {"mean": float(pairs.mean()), "values": pairs.tolist()}}
  return out


def verdicts(values, metric: str, slice_name: str = "single"):
  """[(method, difference)] against the baseline, Holm over CLAIMED."""
  table = entries(values, slice_name)
  diffs = [stats.difference(table[m], table["baseline"], metric) for m in CLAIMED]
  stats.judge(diffs)
  return list(zip(CLAIMED, diffs))


def main(argv):
  if len(argv) != 2:
    print("usage: multiview_prereg.py SLICES_JSON", file=sys.stderr)
    sys.exit(1)
  try:
    with open(argv[1]) as f:
      values = json.load(f)
    rows = [(metric, verdicts(values, metric)) for metric in ("accuracy", "churn")]
  except (OSError, ValueError, KeyError) as e:
    print(f"error: {argv[1]}: {e}", file=sys.stderr)
    sys.exit(1)
  for metric, diffs in rows:
    label = "pre-registered" if metric == "accuracy" else "description, not pre-registered"
    print(f"\n{metric} on the single-view slice, method - baseline ({label}):\n")
    print("| method | runs | difference (points) [95%], verdict (Holm over 3) |")
    print("|---|---|---|")
    for name, d in diffs:
      print(f"| {name} | {d['runs']} | {stats.verdict_text(d)} |")


if __name__ == "__main__":
  main(sys.argv)
