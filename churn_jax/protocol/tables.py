"""The App. A protocol tables from a study's results.json (one entry per method and point).

  - the coefficient table: every method, every coefficient, mean ± std of each metric; the
    coefficient with the lowest mean test churn is marked "test" (the paper's selection: App.
    A reports "the beta corresponding to best churn", chosen on the test set, which biases the
    reported test number), and the one with the lowest mean validation churn is marked "val"
    (the honest alternative: the validation split is held out of training, and the test
    numbers of that coefficient are an unbiased report);
  - the Table-2-style summary: the baseline and each method at its selected coefficient, with
    the difference to the baseline in each of DIFF_METRICS, its interval, p-value, minimum
    detectable effect and verdict (stats.difference; Holm over each column's methods), in
    Markdown, CSV and LaTeX;
  - churn, accuracy and entropy against the coefficient (Bhojanapalli et al. Figures 2, 3, 5)
    as CSV and a PNG.
"""

import csv
import io
import os
from typing import Any, Dict, List, Optional, Tuple

from churn_jax.outputs import results_files
from churn_jax.protocol import stats
from churn_jax.runtime import fileio

# (title, key, percent): the metrics of the coefficient table. Rates in percent; SChurn,
# entropy and NLL on their natural scale, as in results.md (SChurn can exceed 1).
METRICS = (("accuracy %", "accuracy", True), ("churn %", "churn", True),
           ("SChurn", "schurn", False), ("churn correct %", "churn_correct", True),
           ("entropy", "entropy", False), ("ECE %", "ece", True), ("NLL", "nll", False))
CURVE_METRICS = ("churn", "accuracy", "entropy")
SELECTIONS = ("test", "validation")
# (title, key): the metrics every Table 2 and differences table judges against its reference.
DIFF_METRICS = (("churn", "churn"), ("accuracy", "accuracy"), ("SChurn", "schurn"),
                ("churn correct", "churn_correct"), ("churn incorrect", "churn_incorrect"),
                ("ECE", "ece"))
DIFF_FIELDS = ("diff", "low", "high", "p_value", "p_holm", "mde", "verdict")
HOLM_NOTE = ("Δ = method − {ref} in percentage points (SChurn ×100), [95% jackknife t-interval "
             "over runs, paired by run index: run r of both shares its seeds]; the verdict is "
             "decided by the Holm-adjusted p-value over the methods of each column (the CSV "
             "keeps the unadjusted p_value beside p_holm): held = significantly better, "
             "reversed = significantly worse, cannot tell = not significant, with the minimum "
             "detectable effect (MDE, 80% power, unadjusted 5% level) at these runs; too few "
             "runs = under 3 (docs/STATISTICS.md).\n")


def groups(results: Dict[str, Any]) -> Dict[str, List[Tuple[str, Optional[float], dict]]]:
  """method -> [(entry name, coefficient or None, entry)], points sorted by coefficient."""
  out = {}
  for name, entry in results["methods"].items():
    sweep = entry.get("sweep")
    method = sweep["method"] if sweep else name
    out.setdefault(method, []).append((name, sweep["value"] if sweep else None, entry))
  for rows in out.values():
    rows.sort(key=lambda r: (r[1] is None, r[1] or 0.0))
  return out


def _churn(entry: Dict[str, Any], split: str) -> Optional[float]:
  source = entry if split == "test" else entry.get("validation")
  return None if source is None else source["churn"]["mean"]


def select(rows, split: str) -> Optional[str]:
  """The entry name with the lowest mean churn on `split` ('test' or 'validation')."""
  scored = [(_churn(e, split), n) for n, _, e in rows if _churn(e, split) is not None]
  return min(scored)[1] if scored else None


def _fmt(summary, percent: bool) -> str:
  if percent:
    return f"{100 * summary['mean']:.2f} ± {100 * summary['std']:.2f}"
  return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def coefficient_table(results: Dict[str, Any]) -> str:
  """Markdown: every method and coefficient; test/val marks the selected coefficient."""
  has_val = any("validation" in e for e in results["methods"].values())
  header = ["method", "coefficient", "runs"] + [t for t, _, _ in METRICS]
  header += ["val churn %", "selected"] if has_val else ["selected"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for method, rows in groups(results).items():
    best = {split: select(rows, split) for split in SELECTIONS}
    key = rows[0][2].get("sweep", {}).get("key", "")
    for name, value, entry in rows:
      coef = "-" if value is None else f"{key.removesuffix('.value')}={value:g}"
      cells = [method, coef, str(entry["num_runs"])]
      cells += [_fmt(entry[k], p) if k in entry else "-" for _, k, p in METRICS]
      if has_val:
        cells.append(_fmt(entry["validation"]["churn"], True) if "validation" in entry else "-")
      marks = [s if s == "test" else "val" for s in SELECTIONS if best[s] == name]
      cells.append(", ".join(marks) if value is not None else "")
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def summary_rows(results: Dict[str, Any], selection: str = "validation",
                 baseline: str = "baseline") -> List[Dict[str, Any]]:
  """Table 2: the baseline and every method at the coefficient `selection` picks, each with
  d_<metric> = stats.difference against `baseline`, verdicts Holm-adjusted per column."""
  if selection not in SELECTIONS:
    raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
  base = results["methods"].get(baseline)
  rows = []
  for method, points in groups(results).items():
    name = points[0][0] if len(points) == 1 else select(points, selection)
    if name is None:
      continue
    entry = results["methods"][name]
    value = entry.get("sweep", {}).get("value")
    row = {"method": method, "entry": name, "coefficient": value, "runs": entry["num_runs"],
           "training_cost": entry.get("training_cost")}
    for _, key, _ in METRICS:
      if key in entry:
        row[key] = entry[key]
    if base is not None and name != baseline:
      for _, key in DIFF_METRICS:
        if key in entry and key in base:
          row[f"d_{key}"] = stats.difference(entry, base, key)
    rows.append(row)
  for _, key in DIFF_METRICS:
    stats.judge([r[f"d_{key}"] for r in rows if f"d_{key}" in r])
  return rows


def summary_markdown(rows, baseline: str = "baseline") -> str:
  header = ["method", "coefficient", "runs", "accuracy %", "churn %", "SChurn", "entropy"]
  header += [f"Δ{title} vs {baseline}" for title, _ in DIFF_METRICS]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in rows:
    cells = [r["method"], "-" if r["coefficient"] is None else f"{r['coefficient']:g}",
             str(r["runs"])]
    cells += [_fmt(r[k], p) if k in r else "-" for k, p in
              (("accuracy", True), ("churn", True), ("schurn", False), ("entropy", False))]
    cells += [stats.verdict_text(r.get(f"d_{key}")) for _, key in DIFF_METRICS]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def summary_csv(rows) -> str:
  buf = io.StringIO()
  writer = csv.writer(buf)
  header = ["method", "entry", "coefficient", "runs"]
  header += [f"{k}_{s}" for _, k, _ in METRICS for s in ("mean", "std")]
  header += [f"d_{k}_{s}" for _, k in DIFF_METRICS for s in DIFF_FIELDS]
  writer.writerow(header)
  for r in rows:
    line = [r["method"], r["entry"], r["coefficient"], r["runs"]]
    line += [r[k][s] if k in r else "" for _, k, _ in METRICS for s in ("mean", "std")]
    line += [_blank(r.get(f"d_{k}", {}).get(s)) for _, k in DIFF_METRICS for s in DIFF_FIELDS]
    writer.writerow(line)
  return buf.getvalue()


def _blank(value):
  return "" if value is None else value


def summary_latex(rows, caption: str = "") -> str:
  """A booktabs table: accuracy and churn (mean $\\pm$ std, %), Δchurn with its interval."""
  esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%")
  lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{lrrrrl}", r"\toprule",
           r"Method & Coef. & Accuracy (\%) & Churn (\%) & SChurn & "
           r"$\Delta$Churn [95\% CI] \\",
           r"\midrule"]
  for r in rows:
    pm = lambda k: (_fmt(r[k], k != "schurn").replace("±", "$\\pm$") if k in r else "-")
    diff = esc(stats.verdict_text(r.get("d_churn")))
    coef = "-" if r["coefficient"] is None else f"{r['coefficient']:g}"
    lines.append(f"{esc(r['method'])} & {coef} & {pm('accuracy')} & {pm('churn')} & "
                 f"{pm('schurn')} & {diff} \\\\")
  lines += [r"\bottomrule", r"\end{tabular}"]
  if caption:
    lines.append(r"\caption{" + esc(caption) + "}")
  return "\n".join(lines + [r"\end{table}"]) + "\n"


VERDICT_TABLES = ("differences*.csv", "protocol_table2_*.csv")


def read_verdicts(workdir: str) -> Dict[Tuple[str, str, str], str]:
  """(table file, method, metric) -> verdict of every verdict table in `workdir` (Table 2s,
  differences*), as they are on disk now; tables of any earlier version read the same way.
  A gs:// workdir too (fileio: a local glob found none there, so `churn-jax report` on a bucket
  reported every verdict as new)."""
  out = {}
  for pattern in VERDICT_TABLES:
    for path in sorted(fileio.path(workdir).glob(pattern), key=str):
      for row in csv.DictReader(io.StringIO(path.read_text(), newline="")):
        for column, value in row.items():
          if column and column.startswith("d_") and column.endswith("_verdict") and value:
            out[(path.name, row["method"], column[2:-8])] = value
  return out


def verdict_changes(before: Dict[Tuple[str, str, str], str],
                    after: Dict[Tuple[str, str, str], str]) -> List[str]:
  """One line per verdict that differs (or is new) in `after` against `before`."""
  lines = []
  for key in sorted(after):
    old = before.get(key)
    if old != after[key]:
      table, method, metric = key
      lines.append(f"{table}: {method} {metric}: {old or '(none)'} -> {after[key]}")
  return lines


def write_verdict_changes(workdir: str, before: Dict[Tuple[str, str, str], str]) -> List[str]:
  """WORKDIR/verdict_changes.md: what the tables say now that they did not before (nothing is
  written when no verdict table existed before)."""
  if not before:
    return []
  lines = verdict_changes(before, read_verdicts(workdir))
  path = os.path.join(workdir, "verdict_changes.md")
  body = ("# Verdicts changed by `churn-jax report`\n\n"
          "Each verdict table before this report against the same table after it (statistics: "
          "churn_jax/protocol/stats.py).\n\n"
          + ("\n".join(f"- {line}" for line in lines) if lines else "No verdict changed.")
          + "\n")
  results_files.atomic_write(path, body)
  return [path]


def curves_csv(results: Dict[str, Any]) -> str:
  """method, coefficient, and mean/std of churn, accuracy, entropy (Figures 2, 3, 5)."""
  buf = io.StringIO()
  writer = csv.writer(buf)
  writer.writerow(["method", "key", "coefficient"] +
                  [f"{k}_{s}" for k in CURVE_METRICS for s in ("mean", "std")])
  for method, rows in groups(results).items():
    for _, value, entry in rows:
      if value is None:
        continue
      writer.writerow([method, entry["sweep"]["key"], value] +
                      [entry[k][s] for k in CURVE_METRICS for s in ("mean", "std")])
  return buf.getvalue()


def plot_curves(results: Dict[str, Any], path: str) -> Optional[str]:
  """Churn, accuracy and entropy against the coefficient, one column per swept method."""
  swept = {m: [r for r in rows if r[1] is not None] for m, rows in groups(results).items()}
  swept = {m: rows for m, rows in swept.items() if len(rows) > 1}
  if not swept:
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  base = results["methods"].get("baseline")
  fig, axes = plt.subplots(len(CURVE_METRICS), len(swept), squeeze=False,
                           figsize=(3.2 * len(swept), 2.4 * len(CURVE_METRICS)))
  for col, (method, rows) in enumerate(swept.items()):
    xs = [v for _, v, _ in rows]
    for row, key in enumerate(CURVE_METRICS):
      ax = axes[row, col]
      scale = 1.0 if key == "entropy" else 100.0
      ax.errorbar(xs, [scale * e[key]["mean"] for *_, e in rows],
                  yerr=[scale * e[key]["std"] for *_, e in rows], marker="o", capsize=3,
                  label=f"{method} (mean ± std)")
      if base is not None:
        level = scale * base[key]["mean"]
        ax.axhline(level, color="gray", ls="--", lw=1, label="baseline (mean)")
        low, high = ax.get_ylim()  # The baseline's level inside the axes, with a margin.
        pad = 0.05 * (max(high, level) - min(low, level) or 1.0)
        ax.set_ylim(min(low, level - pad), max(high, level + pad))
      if row == 0:
        ax.legend(fontsize=7)
      ax.set_xlabel(f"{method}: {rows[0][2]['sweep']['key'].removesuffix('.value')}")
      ax.set_ylabel(key + ("" if key == "entropy" else " (%)"))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def write_protocol(workdir: str, results: Dict[str, Any], header: str = "") -> List[str]:
  """Writes protocol.md (both tables, both selections), protocol_table2_<selection>.{md,csv,
  tex}, protocol_curves.{csv,png} into `workdir`; returns the paths."""
  has_val = any("validation" in e for e in results["methods"].values())
  selections = ("validation", "test") if has_val else ("test",)
  paths, text = [], [header.rstrip() + "\n"] if header else []
  text += ["## Every coefficient (App. A)\n",
           "Selected: `test` = lowest mean test churn (the paper's selection: it selects on the "
           "test set, so its test numbers are biased low); `val` = lowest mean churn on a "
           "validation split held out of training (the honest selection).\n",
           coefficient_table(results)]
  for selection in selections:
    rows = summary_rows(results, selection)
    stem = os.path.join(workdir, f"protocol_table2_{selection}")
    for ext, body in (("md", summary_markdown(rows)), ("csv", summary_csv(rows)),
                      ("tex", summary_latex(rows, f"selected on {selection} churn"))):
      results_files.atomic_write(f"{stem}.{ext}", body)
      paths.append(f"{stem}.{ext}")
    text += [f"\n## Table 2, coefficient selected on {selection} churn\n",
             HOLM_NOTE.format(ref="baseline"), summary_markdown(rows)]
  results_files.atomic_write(os.path.join(workdir, "protocol_curves.csv"), curves_csv(results))
  paths.append(os.path.join(workdir, "protocol_curves.csv"))
  png = plot_curves(results, os.path.join(workdir, "protocol_curves.png"))
  if png:
    paths.append(png)
    text.append("\n![churn, accuracy and entropy against the coefficient](protocol_curves.png)\n")
  results_files.atomic_write(os.path.join(workdir, "protocol.md"), "\n".join(text))
  return [os.path.join(workdir, "protocol.md")] + paths
