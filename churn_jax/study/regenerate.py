"""`churn-jax report WORKDIR`: tables and plots regenerated from the saved predictions.

Every study calls `write_plots` at its end; `regenerate` recomputes each method's metrics from
WORKDIR/predictions/<method>.npz (checked against the sha256 in results.json), rewrites
results.{md,csv,tex} and differences.{md,csv} (each method against the baseline, with
bootstrap intervals) from them and redraws the plots, so what a reader sees always follows
from files they can open. results.json itself is left as the study wrote it.
"""

import copy
import json
import os
from typing import Any, Dict, List, Sequence

import numpy as np

from churn_jax.outputs import observer, plots, predictions, results_files, tables
from churn_jax.protocol import tables as protocol_tables
from churn_jax.study import evaluate

PLOTS_DIRNAME = "plots"
DIFFERENCE_SAMPLES = 2000  # Bootstrap draws of differences.md (churn_jax/cli/docs_tables.py too).
DIFFERENCES_STEM = "differences"


def _load_results(workdir: str) -> Dict[str, Any]:
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    raise ValueError(f"{path} does not exist: WORKDIR must be a study's workdir")
  try:
    with open(path) as f:
      results = json.load(f)
    assert isinstance(results.get("methods"), dict)
  except (ValueError, AssertionError, AttributeError):
    raise ValueError(f"{path} is not a results file of churn_jax") from None
  return results


def _mean_band(values: List[List[float]]):
  """Mean, min and max over runs of per-step lists of per-run values."""
  arr = np.asarray([[np.nan if v is None else v for v in row] for row in values], float)
  return arr.mean(1), arr.min(1), arr.max(1)


def _curve_panels(workdir: str, names) -> Dict[str, List[plots.Panel]]:
  """Training-curve and eval panels from WORKDIR/curves/<method>.jsonl of the given methods."""
  loss, lr, coefs, acc, churn = [], [], [], [], []
  for name in names:
    path = observer.curves_path(workdir, name)
    if not os.path.exists(path):
      continue
    records = observer.read_curves(path)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    keys = sorted({k for r in train for k in r["runs"]})
    for key in keys:
      rows = [r for r in train if key in r["runs"]]
      steps = [r["step"] for r in rows]
      mean, lo, hi = _mean_band([r["runs"][key] for r in rows])
      if key == "loss":
        loss.append(plots.Series(name, steps, mean, lo, hi))
      elif key == "learning_rate":
        lr.append(plots.Series(name, steps, mean))
      elif key.startswith("coef/"):
        coefs.append(plots.Series(f"{name} {key[5:]}", steps, mean, lo, hi))
    if evals:
      steps = [r["step"] for r in evals]
      mean, lo, hi = _mean_band([r["runs"]["accuracy"] for r in evals])
      acc.append(plots.Series(name, steps, 100 * mean, 100 * lo, 100 * hi))
      mean, lo, hi = _mean_band([r["pairs"]["churn"] for r in evals])
      churn.append(plots.Series(name, steps, 100 * mean, 100 * lo, 100 * hi))
  out = {}
  if loss or lr or coefs:
    out["training_curves"] = [
        plots.Panel("training loss (mean, band: min-max over runs)", "step", "loss", loss,
                    logy=all(np.nanmin(s.lo) > 0 for s in loss)),  # SKL losses go negative.
        plots.Panel("learning rate", "step", "learning rate", lr)]
    if coefs:
      out["training_curves"].append(plots.Panel("loss coefficients", "step", "value", coefs))
  if acc:
    out["eval_curves"] = [
        plots.Panel("test accuracy of the deployed models", "step", "accuracy (%)", acc),
        plots.Panel("churn between runs (band: min-max over pairs)", "step", "churn (%)",
                    churn)]
  return out


def write_plots(workdir: str, results: Dict[str, Any]) -> List[str]:
  """Writes WORKDIR/plots/*.png (each with its .csv); returns the PNG paths."""
  out_dir = os.path.join(workdir, PLOTS_DIRNAME)
  methods = results["methods"]
  data = results.get("config", {}).get("data", {})
  runs = max([e.get("num_runs", 0) for e in methods.values()] or [0])
  where = f"{data.get('name', '')}, {runs} runs"
  written = []
  points = [plots.TradeoffPoint(name, e["churn"]["mean"], e["churn"]["std"],
                                e["accuracy"]["mean"], e["accuracy"]["std"],
                                e.get("training_cost", 1.0), e.get("inference_cost", 1.0))
            for name, e in methods.items() if "churn" in e and "accuracy" in e]
  if points:
    path = os.path.join(out_dir, "accuracy_vs_churn.png")
    plots.plot_tradeoff(path, points, where)
    written.append(path)
  diagrams = []
  for name, entry in methods.items():
    info = entry.get("predictions")
    if info and os.path.exists(os.path.join(workdir, info["path"])):
      pred = predictions.load(os.path.join(workdir, info["path"]))
      diagrams.append((name, pred["deployed"], pred["labels"],
                       f"ECE {tables.cell(entry, 'ece', 'percent')} %, runs pooled"))
  if diagrams:
    path = os.path.join(out_dir, "reliability.png")
    plots.plot_reliability(path, diagrams)
    written.append(path)
  for stem, panels in _curve_panels(workdir, list(methods)).items():
    path = os.path.join(out_dir, f"{stem}.png")
    plots.plot_panels(path, panels, title=where)
    written.append(path)
  return written


def write_differences(workdir: str, results: Dict[str, Any],
                      num_samples: int = DIFFERENCE_SAMPLES,
                      against: str = "baseline") -> List[str]:
  """Writes WORKDIR/differences.{md,csv}: each method minus the baseline in churn and accuracy,
  with a 95% bootstrap interval over runs and a verdict (churn_jax/protocol/stats.py). With
  `against` another method (a 2-ensemble, plain distillation), differences_vs_<against>.*.

  A claim such as "method X reduces churn" is only as good as this interval: with R runs the
  spread of churn between run pairs is often as large as the difference between methods.
  Nothing is written without a baseline or with fewer than 2 runs (no pair to compare).
  """
  methods = results["methods"]
  base = methods.get(against)
  if base is None or int(base.get("num_runs", 0)) < 2 or "churn" not in base:
    return []
  rows = protocol_tables.summary_rows(results, "test", baseline=against,
                                      num_samples=num_samples)
  runs = int(base["num_runs"])
  stem = DIFFERENCES_STEM if against == "baseline" else f"{DIFFERENCES_STEM}_vs_{against}"
  text = (f"# Differences against {against} ({runs} runs per method)\n\n"
          "Δ = method − baseline in percentage points, [95% percentile bootstrap interval over "
          f"runs, {num_samples} draws; churn resamples runs and averages their pairs]; held = "
          "the interval excludes 0 on the better side, reversed = on the worse side, cannot "
          "tell = it contains 0. Welch's p is on the per-run accuracies.\n\n"
          + protocol_tables.summary_markdown(rows, against))
  paths = []
  for ext, body in (("md", text), ("csv", protocol_tables.summary_csv(rows))):
    path = os.path.join(workdir, f"{stem}.{ext}")
    results_files.atomic_write(path, body)
    paths.append(path)
  return paths


def _rewrite_protocol(workdir: str, results: Dict[str, Any]) -> List[str]:
  """The protocol tables of a stacked sweep (launch/sweep.py --mode=stacked), with the header
  (command, wall time, machine) of the protocol.md the sweep wrote kept as it was."""
  header, path = "", os.path.join(workdir, "protocol.md")
  if os.path.exists(path):
    with open(path) as f:
      header = f.read().split("\n## ", 1)[0]
  return protocol_tables.write_protocol(workdir, results, header)


def _max_difference(a, b) -> float:
  """Largest absolute difference between two summaries ({mean, std, values})."""
  worst = 0.0
  for x, y in zip([a["mean"], a["std"]] + list(a["values"]),
                  [b["mean"], b["std"]] + list(b["values"])):
    if (x is None) != (y is None):
      return float("inf")
    if x is not None:
      worst = max(worst, abs(float(x) - float(y)))
  return worst


def regenerate(workdir: str, tolerance: float = 1e-6, against: Sequence[str] = ()):
  """Recomputes the tables from the predictions and redraws the plots; `against` adds
  differences_vs_<method>.{md,csv} for each method named (a ValueError if it is unknown).

  Returns (written paths, warnings): a warning names a value of results.json that its
  predictions do not reproduce within `tolerance`.
  """
  results = _load_results(workdir)
  unknown = [a for a in against if a not in results["methods"]]
  if unknown:
    raise ValueError(f"--against: no method {unknown[0]!r} in {workdir}/results.json; it has "
                     f"{', '.join(results['methods'])}")
  alpha = float(results.get("config", {}).get("schurn_alpha", 1.0))
  fresh = copy.deepcopy(results)
  warnings = []
  for name, entry in results["methods"].items():
    path = predictions.check(workdir, name, entry.get("predictions"))
    pred = predictions.load(path)
    summary = evaluate.summarize(pred["deployed"], pred["labels"], alpha)
    for key, value in summary.items():
      old = entry.get(key)
      if isinstance(value, dict) and isinstance(old, dict):
        diff = _max_difference(value, old)
        if diff > tolerance:
          warnings.append(f"{name}.{key}: results.json differs from its predictions by {diff:g}")
      fresh["methods"][name][key] = value
  written = []
  for ext, fmt in (("md", tables.format_markdown), ("csv", tables.format_csv),
                   ("tex", tables.format_latex)):
    path = os.path.join(workdir, f"results.{ext}")
    results_files.atomic_write(path, fmt(fresh))
    written.append(path)
  written += write_differences(workdir, fresh)
  if any("sweep" in e for e in fresh["methods"].values()):
    written += _rewrite_protocol(workdir, fresh)
  for name in against:
    written += write_differences(workdir, fresh, against=name)
  return written + write_plots(workdir, fresh), warnings
