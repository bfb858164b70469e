"""Results files: results.json (everything), results.csv, results.md and results.tex (tables).

Every file is written atomically (temporary file in the same directory, then os.replace), so
an interrupted study never leaves a half-written result. The table formats live in
churn_jax/outputs/tables.py; `churn-jax report WORKDIR` (churn_jax/outputs/report.py)
rewrites them and the plots from the saved predictions.
"""

import json
import os
import tempfile
from typing import Any, Dict

from churn_jax.outputs import tables

COLUMNS = tables.COLUMNS


def atomic_write(path: str, text) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path))
  try:
    with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


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
