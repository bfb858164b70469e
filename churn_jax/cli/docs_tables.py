"""`churn-jax docs`: the tables in README.md and docs/*.md written from study workdirs.

A table a command produces sits in a marked block, so no number in the docs is typed:

  <!-- churn-jax docs: results workdir=runs/mnist1d -->
  | method | runs | ... |           (written by `churn-jax docs --write README.md`)
  <!-- end churn-jax docs -->

Kinds: `results` (the table the study prints), `differences` (WORKDIR/differences.md's
table: each method minus the baseline, or minus `against=METHOD`, with bootstrap intervals)
and `compare` (what `churn-jax compare` prints, run in WORKDIR with `args=` split at commas,
in a code fence).
Both are re-derived from the workdir's saved predictions (each checked against the sha256
results.json lists; study/evaluate.py's summary, outputs/tables.py and protocol/tables.py
format them), i.e. exactly what the study printed and wrote. A source may also be a cache made
by `churn-jax docs --cache WORKDIR OUT`: results.json plus the deployed probabilities of every
method in one compressed npz, small enough to ship with the tests, which check README against
it.
"""

import contextlib
import io
import json
import os
import re
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from churn_jax.outputs import predictions, tables
from churn_jax.protocol import tables as protocol_tables
from churn_jax.study import evaluate, regenerate

BLOCK = re.compile(r"(?P<open><!-- churn-jax docs: (?P<kind>results|differences|compare) "
                   r"workdir=(?P<workdir>\S+)(?: against=(?P<against>[\w.-]+))?"
                   r"(?: args=(?P<args>\S+))? -->\n)"
                   r"(?P<body>.*?)"
                   r"(?P<close><!-- end churn-jax docs -->)", re.S)
CACHE_FILE = "deployed.npz"


def _load_results(source: str) -> dict:
  path = os.path.join(source, "results.json")
  if not os.path.isfile(path):
    raise ValueError(f"{source}: no results.json (not a study workdir or a docs cache)")
  with open(path) as f:
    return json.load(f)


def _deployed_loader(source: str, results: dict) -> Callable[[str], Tuple[np.ndarray, np.ndarray]]:
  """method -> (deployed (R, N, K), labels (N,)) from a workdir's predictions or a cache."""
  cache = os.path.join(source, CACHE_FILE)
  if os.path.isfile(cache):
    with np.load(cache, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}

    def from_cache(method):
      if f"{method}.deployed" not in arrays:
        raise ValueError(f"{cache}: no predictions of method {method!r}")
      return arrays[f"{method}.deployed"], arrays["labels"]
    return from_cache

  def from_workdir(method):
    entry = results["methods"][method]
    pred = predictions.load(predictions.check(source, method, entry.get("predictions")))
    return pred["deployed"], pred["labels"]
  return from_workdir


def rederive(source: str) -> dict:
  """The results of a workdir (or cache) with every metric recomputed from its predictions."""
  results = _load_results(source)
  load = _deployed_loader(source, results)
  alpha = float(results.get("config", {}).get("schurn_alpha", 1.0))
  for name, entry in results["methods"].items():
    deployed, labels = load(name)
    entry.update(evaluate.summarize(deployed, labels, alpha))
  return results


def table(source: str, kind: str = "results", against: Optional[str] = None) -> str:
  """A table re-derived from `source`'s predictions: "results" (what the study printed) or
  "differences" (against the baseline, or `against`)."""
  results = rederive(source)
  if kind == "results":
    return tables.format_markdown(results)
  against = against or "baseline"
  if against not in results["methods"]:
    raise ValueError(f"{source}: no method {against!r} to take differences against")
  rows = protocol_tables.summary_rows(results, "test", baseline=against)
  return protocol_tables.summary_markdown(rows, against)


def compare_output(source: str, args: str) -> str:
  """stdout of `churn-jax compare ARGS` run in directory `source` (file names as typed)."""
  from churn_jax.cli import command  # pylint: disable=import-outside-toplevel  # Its caller.
  out, err = io.StringIO(), io.StringIO()
  with contextlib.chdir(source), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = command.compare(args.split(","))
  if code:
    raise ValueError(f"churn-jax compare {args.replace(',', ' ')} in {source}: "
                     f"{err.getvalue().strip()}")
  return out.getvalue()


def machine(source: str) -> str:
  """'AMD EPYC, jax 0.10.2' from a source's results.json (the CPU that made the numbers)."""
  env = _load_results(source).get("environment", {})
  cpu = env.get("host_cpu") or env.get("device_kind", "unknown")
  return f"{cpu}, jax {env.get('versions', {}).get('jax', '?')}"


def write_cache(workdir: str, out: str) -> List[str]:
  """OUT/results.json and OUT/deployed.npz (compressed) from a finished study's workdir."""
  results = _load_results(workdir)
  load = _deployed_loader(workdir, results)
  arrays, labels = {}, None
  for name in results["methods"]:
    deployed, labels_m = load(name)
    if labels is not None and not np.array_equal(labels, labels_m):
      raise ValueError(f"{workdir}: methods have different test labels")
    labels, arrays[f"{name}.deployed"] = labels_m, deployed
  os.makedirs(out, exist_ok=True)
  shutil.copyfile(os.path.join(workdir, "results.json"), os.path.join(out, "results.json"))
  np.savez_compressed(os.path.join(out, CACHE_FILE), labels=labels, **arrays)
  return [os.path.join(out, "results.json"), os.path.join(out, CACHE_FILE)]


def blocks(text: str) -> List[re.Match]:
  return list(BLOCK.finditer(text))


def render(text: str, sources: Optional[Dict[str, str]] = None, base: str = ".",
           only: Optional[Sequence[str]] = None) -> str:
  """`text` with every block's table re-derived; `sources` maps a block's workdir= to the
  directory to read instead (default: that workdir, relative to `base`). With `only`, blocks
  of other workdirs are left as they are."""
  sources = sources or {}

  def body(match):
    if only is not None and match["workdir"] not in only:
      return match[0]
    source = sources.get(match["workdir"]) or os.path.join(base, match["workdir"])
    if match["kind"] == "compare":
      body = "```\n" + compare_output(source, match["args"] or "") + "```\n"
    else:
      body = table(source, match["kind"], match["against"])
    return match["open"] + body + match["close"]
  return BLOCK.sub(body, text)


def update(paths, sources: Optional[Dict[str, str]] = None, write: bool = False,
           base: str = ".", only: Optional[Sequence[str]] = None) -> List[str]:
  """Checks (or with `write` rewrites) the blocks of each markdown file; returns the files
  whose tables differ from what their workdirs give (after writing: those rewritten)."""
  stale = []
  for path in paths:
    with open(path) as f:
      text = f.read()
    if not blocks(text):
      continue
    fresh = render(text, sources, base, only)
    if fresh != text:
      stale.append(path)
      if write:
        with open(path, "w") as f:
          f.write(fresh)
  return stale
