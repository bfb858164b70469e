"""`churn-jax report WORKDIR`: tables and plots regenerated from the saved predictions.

Every study calls `write_plots` at its end; `regenerate` recomputes each method's metrics from
WORKDIR/predictions/<method>.npz (checked against the sha256 in results.json), rewrites
results.{md,csv,tex} and differences.{md,csv} (each method against the baseline, every
verdict re-derived by churn_jax.protocol.stats.difference) from them and redraws the plots,
so what a reader sees always follows from files they can open. results.json is derived data
too: a value its predictions do not reproduce is refused, or rewritten from them with
`report --repair`.
"""

import copy
import json
import os
from typing import Any, Dict, List, Sequence

import jax
import ml_collections
import numpy as np

from churn_jax.outputs import observer, plots, predictions, results_files, tables
from churn_jax.protocol import tables as protocol_tables
from churn_jax.runtime import fileio
from churn_jax.study import results_store

PLOTS_DIRNAME = "plots"
DIFFERENCE_SAMPLES = 2000  # Bootstrap draws of differences.md (churn_jax/cli/docs_tables.py too).
DIFFERENCES_STEM = "differences"


def _load_results(workdir: str) -> Dict[str, Any]:
  path = os.path.join(workdir, "results.json")
  if not fileio.exists(path):  # fileio throughout: a workdir in a gs:// bucket too.
    raise ValueError(f"{path} does not exist: WORKDIR must be a study's workdir")
  try:
    results = json.loads(fileio.read_text(path))
    assert isinstance(results.get("methods"), dict)
  except (ValueError, AssertionError, AttributeError):
    raise ValueError(f"{path} is not a results file of churn_jax") from None
  return results


def _mean_band(values: List[List[float]]):
  """Mean, min and max over runs of per-step lists of per-run values."""
  arr = np.asarray([[np.nan if v is None else v for v in row] for row in values], float)
  return arr.mean(1), arr.min(1), arr.max(1)


def _schedule_series(config: Dict[str, Any]):
  """The learning rate of every step 1..num_train_steps from the study's own schedule (the
  log points alone would draw a step decay as a ramp); None without a recorded config."""
  try:
    lr_fn = observer.learning_rate_fn(ml_collections.ConfigDict(config).lr)
    steps = np.arange(1, int(config["num_train_steps"]) + 1)
    # The update of step t used the schedule's value at t - 1 (observer.on_log).
    # A schedule without boundaries is optax's constant: a scalar whatever the steps' shape.
    # Jitted: one compile, where op by op each of the schedule's jnp calls compiled its own
    # program (13, ~1 CPU-s of a study's plots, benchmarks/plots.py).
    values = np.broadcast_to(np.asarray(jax.jit(lr_fn)(steps - 1), float), steps.shape)
    return plots.Series("every method", steps, values, steps=True)
  except (KeyError, TypeError, ValueError, AttributeError):
    return None


def _curve_panels(workdir: str, names, config: Dict[str, Any] = None,
                  members: Dict[str, int] = None) -> Dict[str, List[plots.Panel]]:
  """Training-curve and eval panels from WORKDIR/curves/<method>.jsonl of the given methods.

  A method with M > 1 members minimises the sum of its members' losses: its loss is drawn
  divided by M, so it shares an axis with single models. Coefficients that stay 0 are left
  out.
  """
  loss, lr, coefs, acc, churn = [], [], [], [], []
  members = members or {}
  for name in names:
    path = observer.curves_path(workdir, name)
    if not fileio.exists(path):
      continue
    records = observer.read_curves(path)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    keys = sorted({k for r in train for k in r["runs"]})
    m = max(int(members.get(name, 1) or 1), 1)
    for key in keys:
      rows = [r for r in train if key in r["runs"]]
      steps = [r["step"] for r in rows]
      mean, lo, hi = _mean_band([r["runs"][key] for r in rows])
      if key == "loss":
        label = name if m == 1 else f"{name} (sum / {m} members)"
        loss.append(plots.Series(label, steps, mean / m, lo / m, hi / m))
      elif key == "learning_rate":
        lr.append(plots.Series(name, steps, mean, steps=True))
      elif key.startswith("coef/") and np.nanmax(np.abs(hi)) > 0:
        coefs.append(plots.Series(f"{name} {key[5:]}", steps, mean, lo, hi))
    if evals:
      steps = [r["step"] for r in evals]
      mean, lo, hi = _mean_band([r["runs"]["accuracy"] for r in evals])
      acc.append(plots.Series(name, steps, 100 * mean, 100 * lo, 100 * hi))
      mean, lo, hi = _mean_band([r["pairs"]["churn"] for r in evals])
      churn.append(plots.Series(name, steps, 100 * mean, 100 * lo, 100 * hi))
  exact = _schedule_series(config) if (lr and config) else None
  if exact is not None:
    lr = [exact]  # One schedule for the whole study, at every step.
  out = {}
  if loss or lr or coefs:
    out["training_curves"] = [
        plots.Panel("training loss per model (mean, band: min-max over runs)", "step", "loss",
                    loss, logy=all(np.nanmin(s.lo) > 0 for s in loss)),  # SKL goes negative.
        plots.Panel("learning rate", "step", "learning rate", lr)]
    if coefs:
      out["training_curves"].append(plots.Panel("loss coefficients", "step", "value", coefs))
  if acc:
    out["eval_curves"] = [
        plots.Panel("test accuracy of the deployed models", "step", "accuracy (%)", acc),
        plots.Panel("churn between runs (band: min-max over pairs)", "step", "churn (%)",
                    churn)]
  return out


CURVE_STEMS = ("training_curves", "eval_curves")


def write_plots(workdir: str, results: Dict[str, Any], removed: List[str] = None) -> List[str]:
  """Writes WORKDIR/plots/*.png (each with its .csv); returns the PNG paths. A curve plot
  whose data (curves/) is gone is deleted, not left stale; its path goes to `removed`."""
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
    if info and fileio.exists(os.path.join(workdir, info["path"])):
      pred = predictions.load(os.path.join(workdir, info["path"]))
      diagrams.append((name, pred["deployed"], pred["labels"],
                       f"ECE {tables.cell(entry, 'ece', 'percent')} %, runs pooled"))
  if diagrams:
    path = os.path.join(out_dir, "reliability.png")
    plots.plot_reliability(path, diagrams)
    written.append(path)
  curves = _curve_panels(workdir, list(methods), results.get("config"),
                         {n: e.get("num_members", 1) for n, e in methods.items()})
  for stem, panels in curves.items():
    path = os.path.join(out_dir, f"{stem}.png")
    plots.plot_panels(path, panels, title=where)
    written.append(path)
  for stem in CURVE_STEMS:
    if stem not in curves:
      for ext in ("png", "csv"):
        path = os.path.join(out_dir, f"{stem}.{ext}")
        if fileio.exists(path):
          fileio.path(path).unlink()
          if removed is not None:
            removed.append(path)
  return written


def write_differences(workdir: str, results: Dict[str, Any],
                      against: str = "baseline") -> List[str]:
  """Writes WORKDIR/differences.{md,csv}: each method minus the baseline in every metric of
  protocol.tables.DIFF_METRICS, each through churn_jax.protocol.stats.difference (interval,
  p-value, minimum detectable effect), verdicts Holm-adjusted per column. With `against`
  another method (a 2-ensemble, plain distillation), differences_vs_<against>.*.

  A claim such as "method X reduces churn" is only as good as this test: with R runs the
  spread of churn between run pairs is often as large as the difference between methods.
  Nothing is written without a baseline or with fewer than 2 runs (no pair to compare).
  """
  methods = results["methods"]
  base = methods.get(against)
  if base is None or int(base.get("num_runs", 0)) < 2 or "churn" not in base:
    return []
  rows = protocol_tables.summary_rows(results, "test", baseline=against)
  runs = int(base["num_runs"])
  stem = DIFFERENCES_STEM if against == "baseline" else f"{DIFFERENCES_STEM}_vs_{against}"
  text = (f"# Differences against {against} ({runs} runs per method)\n\n"
          + protocol_tables.HOLM_NOTE.format(ref=against) + "\n"
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
  if fileio.exists(path):
    header = fileio.read_text(path).split("\n## ", 1)[0]
  return protocol_tables.write_protocol(workdir, results, header)


def regenerate(workdir: str, against: Sequence[str] = (), repair: bool = False):
  """Recomputes the tables from the predictions and redraws the plots; `against` adds
  differences_vs_<method>.{md,csv} for each method named (a ValueError if it is unknown).

  results.json is derived data: a metric its predictions do not reproduce is refused (a
  ValueError naming the method and field, nothing written) unless `repair`, which rewrites
  results.json from the predictions. Returns (written paths, notes): a note names each
  repaired field.
  """
  results = _load_results(workdir)
  unknown = [a for a in against if a not in results["methods"]]
  if unknown:
    raise ValueError(f"--against: no method {unknown[0]!r} in {workdir}/results.json; it has "
                     f"{', '.join(results['methods'])}")
  alpha = float(results.get("config", {}).get("schurn_alpha", 1.0))
  verdicts_before = protocol_tables.read_verdicts(workdir)
  fresh = copy.deepcopy(results)
  mismatches = []
  for name, entry in results["methods"].items():
    summary, wrong = results_store.rederive(workdir, name, entry, alpha)
    mismatches += wrong
    fresh["methods"][name].update(summary)
  if mismatches and not repair:
    raise ValueError(f"{os.path.join(workdir, 'results.json')}: {mismatches[0]}"
                     + (f" and {len(mismatches) - 1} more" if len(mismatches) > 1 else "")
                     + "; rerun with --repair to rewrite it from the predictions (nothing "
                     "was changed)")
  notes = [f"repaired {m}" for m in mismatches]
  written = []
  if mismatches:
    path = os.path.join(workdir, "results.json")
    results_files.atomic_write(path, json.dumps(fresh, indent=1) + "\n")
    written.append(path)
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
  written += protocol_tables.write_verdict_changes(workdir, verdicts_before)
  removed = []
  written += write_plots(workdir, fresh, removed)
  notes += [f"removed {p}: its data (curves/) is gone" for p in removed]
  return written, notes
