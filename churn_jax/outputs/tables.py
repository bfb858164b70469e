"""The study table as Markdown, CSV (with every run's and pair's value) and LaTeX (booktabs).

Conventions shared by the three formats:
- accuracy, churn, churn on slices and ECE are shown in percent; SChurn and the prediction
  difference on their natural scale (SChurn can exceed 1, the L1 difference lies in [0, 2]);
- a cell that is undefined (churn on the incorrect slice when no run misclassifies anything)
  is "n/a", never 0;
- with 2 runs a churn-type cell comes from one pair: it says "(1 pair)" instead of "± 0.00".
"""

import csv
import io
from typing import Any, Dict, List, Optional

# (column title, results key, scale): "percent" x100, "natural" as is, "cost" as "2x".
COLUMNS = (
    ("train cost", "training_cost", "cost"),
    ("infer cost", "inference_cost", "cost"),
    ("accuracy %", "accuracy", "percent"),
    ("churn %", "churn", "percent"),
    ("SChurn", "schurn", "natural"),
    ("churn correct %", "churn_correct", "percent"),
    ("churn incorrect %", "churn_incorrect", "percent"),
    ("ECE %", "ece", "percent"),
    ("pred diff L1", "pred_diff_l1", "natural"),
)
# Metrics summarised over run pairs (the others are over runs).
PAIRWISE = frozenset({"churn", "schurn", "churn_correct", "churn_incorrect", "pred_diff_l1",
                      "pred_diff_l2", "pred_diff_relative"})
NA = "n/a"


def _number(value: float, scale: str) -> str:
  # Rounded first and + 0.0: a value that rounds to zero prints 0.00, never -0.00.
  if scale == "percent":
    return f"{round(100.0 * value, 2) + 0.0:.2f}"
  return f"{round(value, 3) + 0.0:.3f}"


LEGEND = ("mean ± std over runs (accuracy, ECE, NLL, ...) or over run pairs (churn-type "
          "metrics); std is the population std (ddof=0); percent except SChurn and pred diff "
          "L1.")


def cell(entry: Dict[str, Any], key: str, scale: str, pm: str = "±") -> str:
  """One table cell: mean ± std, "mean (1 pair)", a cost "2x", or "n/a"."""
  value = entry.get(key)
  if value is None:
    return NA
  if scale == "cost":
    return f"{value:g}x"
  if not isinstance(value, dict) or value.get("mean") is None:
    return NA
  mean = _number(value["mean"], scale)
  defined = [v for v in value.get("values", []) if v is not None]
  if key in PAIRWISE and len(defined) == 1:
    return f"{mean} (1 pair)"
  return f"{mean} {pm} {_number(value['std'], scale)}"


def format_markdown(results: Dict[str, Any]) -> str:
  """Markdown table: mean ± std over runs (run pairs for churn-type metrics)."""
  header = ["method", "runs"] + [title for title, _, _ in COLUMNS]
  lines = [LEGEND, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, entry in results["methods"].items():
    cells = [name, str(entry["num_runs"])] + [cell(entry, k, s) for _, k, s in COLUMNS]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
  for char in ("\\", "&", "%", "$", "#", "_", "{", "}"):
    text = text.replace(char, "\\" + char)
  return text


def format_latex(results: Dict[str, Any]) -> str:
  """A booktabs tabular (needs \\usepackage{booktabs}) with the Markdown table's cells."""
  header = ["method", "runs"] + [_latex_escape(title) for title, _, _ in COLUMNS]
  lines = ["% churn_jax results: mean $\\pm$ std over runs (accuracy, ECE) or run pairs",
           "% (churn-type metrics), std with ddof=0; percent except SChurn and pred diff L1.",
           "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
           " & ".join(header) + " \\\\", "\\midrule"]
  for name, entry in results["methods"].items():
    cells = [_latex_escape(name), str(entry["num_runs"])]
    for _, key, scale in COLUMNS:
      text = cell(entry, key, scale, pm="\\pm")
      if text.endswith("x") and scale == "cost":
        text = text[:-1] + "$\\times$"
      elif text != NA and "\\pm" in text:
        text = f"${text}$"
      cells.append(text)
    lines.append(" & ".join(cells) + " \\\\")
  lines += ["\\bottomrule", "\\end{tabular}"]
  return "\n".join(lines) + "\n"


def summary_keys(results: Dict[str, Any]) -> List[str]:
  """Every metric key (a {mean, std, values} summary) of any method, in first-seen order."""
  keys = []
  for entry in results["methods"].values():
    for key, value in entry.items():
      if isinstance(value, dict) and "mean" in value and key not in keys:
        keys.append(key)
  return keys


def _value_names(key: str, num_runs: int, run_ids: Optional[List[int]]) -> List[str]:
  ids = run_ids or list(range(num_runs))
  if key in PAIRWISE:
    return [f"{key}_run{ids[i]}_vs_run{ids[j]}" for i in range(num_runs)
            for j in range(i + 1, num_runs)]
  return [f"{key}_run{r}" for r in ids]


def _csv_value(value) -> Any:
  return NA if value is None else value


def format_csv(results: Dict[str, Any]) -> str:
  """One row per method: costs, then per metric its mean, std and every run's (or pair's)
  value, as fractions (not percent). Undefined values are "n/a"."""
  keys = summary_keys(results)
  num_runs = max([e["num_runs"] for e in results["methods"].values()] or [0])
  run_ids = list(range(num_runs))
  header = ["method", "num_runs", "num_members", "prediction", "training_cost", "inference_cost"]
  for key in keys:
    header += [f"{key}_mean", f"{key}_std"] + _value_names(key, num_runs, run_ids)
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  for name, entry in results["methods"].items():
    row = [name, entry["num_runs"]] + [_csv_value(entry.get(k)) for k in (
        "num_members", "prediction", "training_cost", "inference_cost")]
    for key in keys:
      value = entry.get(key) or {}
      values = list(value.get("values", []))
      width = len(_value_names(key, num_runs, run_ids))
      values += [None] * (width - len(values))
      row += [_csv_value(value.get("mean")), _csv_value(value.get("std"))]
      row += [_csv_value(v) for v in values[:width]]
    writer.writerow(row)
  return buf.getvalue()
