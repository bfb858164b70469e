"""Table 1 of Bhojanapalli et al. 2021: which sources of randomness cause churn.

The same recipe is trained with R runs that differ in nothing, in initialisation only, in
data order (and augmentation) only, and in both (config.vary = "", "init", "data",
"init,data"), and churn and accuracy are reported per row. On CPU, XLA is deterministic, so
the "nothing" row is exactly 0. On GPU, reductions and scatters may use atomics whose order
varies from run to run; the paper's GPU columns compare XLA's default with
--xla_gpu_deterministic_ops=true (`deterministic_xla_flags`), which must be set before JAX
initialises its backend (launch/table1.py --deterministic_ops does that).
"""

import os
from typing import Any, Dict, List, Sequence, Tuple

from churn_jax.study import train

# (row title, config.vary)
SOURCES: Tuple[Tuple[str, str], ...] = (
    ("nothing", ""), ("init only", "init"), ("data order only", "data"),
    ("init and data", "init,data"))
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def deterministic_xla_flags(xla_flags: str) -> str:
  """XLA_FLAGS with XLA:GPU's deterministic reductions and scatters switched on (XLA:CPU
  ignores the flag: it is deterministic already)."""
  if DETERMINISTIC_FLAG in xla_flags:
    return xla_flags
  return f"{xla_flags} {DETERMINISTIC_FLAG}".strip()


def deterministic_ops_enabled() -> bool:
  return DETERMINISTIC_FLAG in os.environ.get("XLA_FLAGS", "")


def run_table1(config, workdir: str, sources: Sequence[Tuple[str, str]] = SOURCES,
               method: str = "baseline") -> List[Dict[str, Any]]:
  """Trains `method` once per source of randomness (workdir/<vary or 'nothing'>/) and returns
  one row per source: {source, vary, accuracy, churn, schurn} (summaries over runs/pairs)."""
  rows = []
  for title, vary in sources:
    row_config = config.copy_and_resolve_references()
    with row_config.unlocked():
      row_config.vary = vary
      row_config.methods = method
    sub = os.path.join(workdir, vary.replace(",", "+") or "nothing")
    entry = train.train_and_evaluate(row_config, sub)["methods"][method]
    rows.append({"source": title, "vary": vary, "num_runs": entry["num_runs"],
                 **{k: entry[k] for k in ("accuracy", "churn", "schurn")}})
  return rows


def markdown(rows: Sequence[Dict[str, Any]]) -> str:
  # Rates in percent, SChurn on its natural scale (as in results.md: it can exceed 1).
  lines = ["| runs differ in | config.vary | runs | accuracy (%) | churn (%) | SChurn |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    cells = [r["source"], f"`{r['vary']}`", str(r["num_runs"])]
    cells += [f"{100 * r[k]['mean']:.2f} ± {100 * r[k]['std']:.2f}" for k in ("accuracy", "churn")]
    cells.append(f"{r['schurn']['mean']:.3f} ± {r['schurn']['std']:.3f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Dict[str, Any]]) -> str:
  lines = ["source,vary,num_runs,accuracy_mean,accuracy_std,churn_mean,churn_std,schurn_mean,"
           "schurn_std"]
  for r in rows:
    values = [r[k][s] for k in ("accuracy", "churn", "schurn") for s in ("mean", "std")]
    lines.append(",".join([r["source"], f"\"{r['vary']}\"", str(r["num_runs"])] +
                          [repr(float(v)) for v in values]))
  return "\n".join(lines) + "\n"
