"""Is a method's metric different from its reference's? One function decides: `difference`.

The unit of replication is the run. Run r of a method and run r of its reference share their
seeds (init and data order; an ensemble's member 0 is bitwise the baseline's run r), so the
comparison is paired by run index. Churn-type metrics are stored per pair of runs
(metrics.pairwise order (0,1), (0,2), ..., (1,2), ...); pairs share runs and are not
independent samples, so the variance comes from a leave-one-run-out jackknife: replicate r is
the metric with run r left out (for a pair metric, the mean over the pairs without run r; for a
per-run metric, the mean of the other runs), taken for the method and the reference alike and
differenced, and the difference's standard error is sqrt((R-1)/R * sum (d_-r - mean d)^2).
For a per-run metric this is exactly the paired t-test. The interval and p-value use Student's
t with R-1 degrees of freedom. Entries with different run counts cannot be paired: their
jackknife variances add and Welch-Satterthwaite gives the degrees of freedom.

Why this one: benchmarks/stats_calibration.py measures it against the percentile bootstrap
over runs (the earlier method: 2-3x its nominal false rate at R = 5), the unpaired jackknife and
permutation tests over run labels; docs/STATISTICS.md has the numbers.

Within one table, `holm` adjusts the p-values of its comparisons and `judge` sets each verdict
from the adjusted p-value; `difference` alone gives the unadjusted verdict.
"""

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
# scipy.special, not scipy.stats: the same t quantiles and tails (stdtrit is what t.ppf calls),
# and every study and `churn-jax` command imports this module: scipy.stats costs ~0.5 s to import.
from scipy import special

# Metrics that evaluate.summarize computes over pairs of runs (the rest are per run).
PAIRWISE = ("churn", "schurn", "churn_correct", "churn_incorrect", "pred_diff_l1",
            "pred_diff_l2", "pred_diff_relative")
# Which way is better, per metric; entropy and confidence gap have no better side.
LOWER_IS_BETTER = {"accuracy": False, "churn": True, "schurn": True, "churn_correct": True,
                   "churn_incorrect": True, "pred_diff_l1": True, "pred_diff_l2": True,
                   "pred_diff_relative": True, "ece": True, "nll": True, "brier": True}
VERDICTS = ("held", "reversed", "cannot tell", "too few runs")
MIN_RUNS = 3  # Below this the jackknife has 1 degree of freedom or none: no verdict.
LEVEL = 0.95
POWER = 0.8


def pair_matrix(values, num_runs: int) -> np.ndarray:
  """(R, R) symmetric matrix of pair values listed as metrics.pairwise lists them (None: nan)."""
  out = np.full((num_runs, num_runs), np.nan)
  rows, cols = np.triu_indices(num_runs, k=1)
  vals = np.asarray([np.nan if v is None else v for v in values], np.float64)
  out[rows, cols] = out[cols, rows] = vals
  return out


def jackknife_values(summary: Dict[str, Any], metric: str, num_runs: int) -> np.ndarray:
  """(R,) leave-one-run-out means of `metric`; nan where nothing defined is left."""
  if metric not in PAIRWISE:
    vals = np.asarray([np.nan if v is None else v for v in summary["values"]], np.float64)
    if len(vals) != num_runs:
      raise ValueError(f"{metric}: {len(vals)} values for {num_runs} runs")
    total, count = np.nansum(vals), np.sum(np.isfinite(vals))
    kept = np.where(np.isfinite(vals), vals, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
      return (total - kept) / (count - np.isfinite(vals))
  if len(summary["values"]) != num_runs * (num_runs - 1) // 2:
    raise ValueError(f"{metric}: {len(summary['values'])} pair values for {num_runs} runs")
  matrix = pair_matrix(summary["values"], num_runs)
  upper = np.triu(np.isfinite(matrix), k=1)
  values = np.where(upper, matrix, 0.0)
  row_sum = values.sum(0) + values.sum(1)  # Pairs that contain run r.
  row_count = upper.sum(0) + upper.sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return (values.sum() - row_sum) / (upper.sum() - row_count)


def _jackknife_var(reps: np.ndarray) -> float:
  n = len(reps)
  return float((n - 1) / n * np.sum((reps - reps.mean()) ** 2))


def _mean(summary: Dict[str, Any]) -> Optional[float]:
  return None if summary.get("mean") is None else float(summary["mean"])


def difference(entry: Dict[str, Any], reference: Dict[str, Any], metric: str, *,
               level: float = LEVEL, paired: Optional[bool] = None,
               lower_is_better: Optional[bool] = None,
               power: float = POWER) -> Dict[str, Any]:
  """`metric` of `entry` minus `reference`'s (method entries as results.json holds them).

  Args:
    entry, reference: dicts with "num_runs" and metric -> {"mean", "std", "values"}.
    metric: a key of evaluate.summarize (per-run or pair metric).
    level: confidence level of the interval; the verdict's test has alpha = 1 - level.
    paired: pair run r with run r (their seeds are shared); default: when the run counts match.
    lower_is_better: the better side; default from LOWER_IS_BETTER (required for others).
    power: the power at which `mde` is computed.

  Returns:
    dict: diff (entry mean - reference mean), low/high (the interval), se, df, p_value
    (two-sided, unadjusted), mde (the smallest |diff| this test detects with probability
    `power` at this se and df), verdict ('held' = better side, 'reversed' = worse side,
    'cannot tell', 'too few runs' below MIN_RUNS runs or defined jackknife values), test
    (which test), runs, level. Undefined numbers are None.
  """
  if lower_is_better is None:
    if metric not in LOWER_IS_BETTER:
      raise ValueError(f"{metric}: no better side known; pass lower_is_better")
    lower_is_better = LOWER_IS_BETTER[metric]
  ra, rb = int(entry["num_runs"]), int(reference["num_runs"])
  a, b = _mean(entry[metric]), _mean(reference[metric])
  out = {"metric": metric, "diff": None if a is None or b is None else a - b, "low": None,
         "high": None, "se": None, "df": None, "p_value": None, "mde": None,
         "verdict": "too few runs", "test": None, "runs": min(ra, rb), "level": level,
         "lower_is_better": lower_is_better}
  if out["diff"] is None or min(ra, rb) < MIN_RUNS:
    return out
  if paired is None:
    paired = ra == rb
  elif paired and ra != rb:
    raise ValueError(f"paired needs equal run counts, got {ra} and {rb}")
  ja = jackknife_values(entry[metric], metric, ra)
  jb = jackknife_values(reference[metric], metric, rb)
  if paired:
    d = ja - jb
    d = d[np.isfinite(d)]
    if len(d) < MIN_RUNS:
      return out
    var, df, test = _jackknife_var(d), len(d) - 1, "paired jackknife t"
  else:
    ja, jb = ja[np.isfinite(ja)], jb[np.isfinite(jb)]
    if min(len(ja), len(jb)) < MIN_RUNS:
      return out
    va, vb = _jackknife_var(ja), _jackknife_var(jb)
    var, test = va + vb, "jackknife Welch t"
    df = (var ** 2 / (va ** 2 / (len(ja) - 1) + vb ** 2 / (len(jb) - 1))
          if var > 0 else len(ja) + len(jb) - 2)
  se = math.sqrt(var)
  crit = float(special.stdtrit(df, 0.5 + level / 2))
  diff = out["diff"]
  if se > 0:
    p = float(2 * special.stdtr(df, -abs(diff) / se))
  else:  # Every run moved by exactly the same amount: no noise to test against.
    p = 0.0 if diff != 0 else 1.0
  out.update(low=diff - crit * se, high=diff + crit * se, se=se, df=float(df), p_value=p,
             mde=(crit + float(special.stdtrit(df, power))) * se, test=test)
  out["verdict"] = decide(out, p, 1 - level)
  return out


def decide(d: Dict[str, Any], p: Optional[float], alpha: float = 1 - LEVEL) -> str:
  """The verdict of a difference `d` at p-value `p` (unadjusted or Holm-adjusted)."""
  if p is None or d.get("diff") is None:
    return "too few runs"
  if p >= alpha:
    return "cannot tell"
  better = d["diff"] < 0 if d["lower_is_better"] else d["diff"] > 0
  return "held" if better else "reversed"


def holm(p_values: Sequence[Optional[float]]) -> List[Optional[float]]:
  """Holm's step-down adjusted p-values (None stays None and does not count)."""
  idx = [i for i, p in enumerate(p_values) if p is not None]
  order = sorted(idx, key=lambda i: p_values[i])
  out, running, m = [None] * len(p_values), 0.0, len(idx)
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p_values[i]))
    out[i] = running
  return out


def judge(differences: Sequence[Dict[str, Any]]) -> None:
  """One table's comparisons: adds p_holm to each and sets its verdict from it (in place)."""
  adjusted = holm([d["p_value"] for d in differences])
  for d, p in zip(differences, adjusted):
    d["p_holm"] = p
    d["verdict"] = decide(d, p, 1 - d["level"])


def verdict_text(d: Dict[str, Any], scale: float = 100.0) -> str:
  """'-0.42 [-0.80, -0.04] held (p=0.031)'; a 'cannot tell' says its minimum detectable
  effect, so a reader sees whether the effect sought could have shown."""
  if d is None or d.get("diff") is None:
    return "-"
  pp = lambda v: f"{round(scale * v, 2) + 0.0:+.2f}"  # A value that rounds to 0 is +0.00.
  if d["low"] is None:
    return f"{pp(d['diff'])} {d['verdict']}"
  text = f"{pp(d['diff'])} [{pp(d['low'])}, {pp(d['high'])}] "
  text += d["verdict"]
  p = d.get("p_holm", d["p_value"])
  text += (" (p<0.001" if p < 0.001 else f" (p={p:.3f}") + (", Holm" if "p_holm" in d else "")
  if d["verdict"] == "cannot tell":
    text += f"; MDE {scale * d['mde']:.2f}"
  return text + ")"
