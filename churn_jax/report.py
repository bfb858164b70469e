"""Results files: results.json (everything), results.csv and results.md (the table).

Every file is written atomically (churn_jax.fileio: temporary file in the same directory, then
os.replace; one upload on gs://), so an interrupted study never leaves a half-written result.
"""

import csv
import io
import json
import os
from typing import Any, Dict

from churn_jax import fileio

# (column title, results key, shown in percent)
COLUMNS = (
    ("train cost", "training_cost", False),
    ("infer cost", "inference_cost", False),
    ("accuracy", "accuracy", True),
    ("churn", "churn", True),
    ("SChurn", "schurn", True),
    ("churn correct", "churn_correct", True),
    ("churn incorrect", "churn_incorrect", True),
    ("ECE", "ece", True),
    ("pred diff L1", "pred_diff_l1", True),
)


def atomic_write(path: str, data) -> None:
  """Writes text or bytes atomically, local or gs:// (churn_jax.fileio.atomic_write)."""
  fileio.atomic_write(path, data)


def _cell(entry: Dict[str, Any], key: str, percent: bool) -> str:
  value = entry.get(key)
  if value is None:
    return "-"
  if isinstance(value, dict):
    scale = 100.0 if percent else 1.0
    return f"{scale * value['mean']:.2f} ± {scale * value['std']:.2f}"
  return f"{value:g}x"


def format_table(results: Dict[str, Any]) -> str:
  """Markdown table, mean ± std over runs (run pairs for churn-type metrics), in percent."""
  header = ["method", "runs"] + [title for title, _, _ in COLUMNS]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, entry in results["methods"].items():
    cells = [name, str(entry["num_runs"])] + [_cell(entry, k, p) for _, k, p in COLUMNS]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def format_csv(results: Dict[str, Any]) -> str:
  """One row per method; mean and std columns per metric, as fractions."""
  buf = io.StringIO()
  writer = csv.writer(buf)
  header = ["method", "num_runs"]
  for _, key, _ in COLUMNS:
    header += [f"{key}_mean", f"{key}_std"] if key not in ("training_cost", "inference_cost") \
        else [key]
  writer.writerow(header)
  for name, entry in results["methods"].items():
    row = [name, entry["num_runs"]]
    for _, key, _ in COLUMNS:
      value = entry.get(key)
      row += [value["mean"], value["std"]] if isinstance(value, dict) else [value]
    writer.writerow(row)
  return buf.getvalue()


def write_results(workdir: str, results: Dict[str, Any]) -> None:
  atomic_write(os.path.join(workdir, "results.json"), json.dumps(results, indent=1) + "\n")
  atomic_write(os.path.join(workdir, "results.csv"), format_csv(results))
  atomic_write(os.path.join(workdir, "results.md"), format_table(results))
