"""Results files: results.json (everything), results.csv, results.md and results.tex (tables).

Every file is written atomically (churn_jax.runtime.fileio: temporary file in the same directory, then
os.replace; one upload on gs://), so an interrupted study never leaves a half-written result.
The table formats live in
churn_jax/outputs/tables.py; `churn-jax report WORKDIR` (churn_jax/study/regenerate.py)
rewrites them and the plots from the saved predictions.
"""

import json
import os
from typing import Any, Dict

from churn_jax.outputs import tables
from churn_jax.runtime import fileio

COLUMNS = tables.COLUMNS


def atomic_write(path: str, data) -> None:
  """Writes text or bytes atomically, local or gs:// (churn_jax.runtime.fileio.atomic_write)."""
  fileio.atomic_write(path, data)


def format_table(results: Dict[str, Any]) -> str:
  """Markdown table, mean ± std over runs (run pairs for churn-type metrics)."""
  return tables.format_markdown(results)


def format_csv(results: Dict[str, Any]) -> str:
  return tables.format_csv(results)


def write_results(workdir: str, results: Dict[str, Any]) -> None:
  atomic_write(os.path.join(workdir, "results.json"), json.dumps(results, indent=1) + "\n")
  atomic_write(os.path.join(workdir, "results.csv"), tables.format_csv(results))
  atomic_write(os.path.join(workdir, "results.md"), tables.format_markdown(results))
  atomic_write(os.path.join(workdir, "results.tex"), tables.format_latex(results))
