"""The Python API (`import churn_jax`): run a study, read its predictions, compare two models.

  import churn_jax
  results = churn_jax.run_study("experiments/mnist1d.py:quick", "runs/q")
  print(churn_jax.format_table(results))
  probs = churn_jax.load_predictions("runs/q", "baseline")["deployed"]   # (R, N, K)
  churn_jax.compare(probs[0], probs[1], labels=...)["churn"]

This module sits above every layer (churn_jax/layers.py); `churn_jax/__init__.py` imports it
lazily so `import churn_jax` stays cheap (no jax until a function is called).
"""

import importlib.util
import json
import os
from typing import Any, Dict, Optional, Union


def load_config(spec: str):
  """The ConfigDict of a config file: 'path/to/config.py' or 'path/to/config.py:arg'.

  Raises:
    ValueError: no such file, or the file has no get_config (one line).
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"config file not found: {path}")
  module_spec = importlib.util.spec_from_file_location(
      "_churn_jax_config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path} defines no get_config(arg)")
  return module.get_config(arg) if arg else module.get_config()


def run_study(config, workdir: str) -> Dict[str, Any]:
  """Trains every method of `config` and returns the results (what WORKDIR/results.json holds).

  Args:
    config: an ml_collections.ConfigDict (e.g. experiments/mnist1d.py's get_config()), or a
      config file spec 'path.py[:arg]'.
    workdir: where results, predictions and checkpoints go; the same call again resumes and
      reuses finished methods (a different config there is refused).

  Raises:
    ValueError: a bad config or workdir (one line; nothing written).
  """
  # pylint: disable=g-import-not-at-top  # jax is imported only when a study runs.
  from churn_jax.runtime import distributed, workdir_lock
  from churn_jax.study import train
  if isinstance(config, str):
    config = load_config(config)
  workdir = os.fspath(workdir)
  workdir_lock.check_workdir(workdir)
  distributed.maybe_initialize()
  return train.train_and_evaluate(config, workdir)


def load_results(workdir: str) -> Dict[str, Any]:
  """WORKDIR/results.json as a dict."""
  path = os.path.join(os.fspath(workdir), "results.json")
  if not os.path.isfile(path):
    raise ValueError(f"no results.json in {workdir}")
  with open(path) as f:
    return json.load(f)


def load_predictions(workdir: str, method: str) -> Dict[str, Any]:
  """The saved test predictions of `method` in a study workdir, checked against results.json.

  Returns a dict: deployed (R, N, K) probabilities of each run, members (R, M, N, K) when the
  method has M > 1 members, labels (N,), example_ids (N,), run_ids (R,), prediction (str).

  Raises:
    ValueError: no such method in the workdir, or its file changed since results.json listed
      it (sha256).
  """
  from churn_jax.outputs import predictions  # pylint: disable=g-import-not-at-top
  workdir = os.fspath(workdir)
  entries = load_results(workdir).get("methods", {})
  if method not in entries:
    raise ValueError(f"no method {method!r} in {workdir}; finished: "
                     f"{', '.join(sorted(entries)) or '(none)'}")
  return predictions.load(predictions.check(workdir, method, entries[method].get("predictions")))


def compare(probs_a, probs_b, labels=None, *, logits: bool = False, alpha: float = 1.0,
            bootstrap: int = 1000, top: int = 10) -> Dict[str, Any]:
  """Churn between two models' predictions on the same N examples (`churn-jax compare`).

  Args:
    probs_a, probs_b: (N, K) probabilities (or logits with `logits=True`), or (N,) classes.
    labels: optional (N,) true labels: adds accuracies and churn on the correct/incorrect slices.
    logits: the (N, K) inputs are logits.
    alpha: the SChurn temperature.
    bootstrap: resamples of the 95% intervals.
    top: rows of the most confident flips listed.

  Returns:
    A dict of fractions (not percent): churn, churn_ci95, schurn, pred_diff_{l1,l2,relative},
    accuracy_a/b, churn_correct/incorrect (with labels), per-class churn and flips.
  """
  # pylint: disable=g-import-not-at-top
  import numpy as np
  from churn_jax.outputs import compare as compare_lib
  a = compare_lib.model_from_array(np.asarray(probs_a), "A", logits)
  b = compare_lib.model_from_array(np.asarray(probs_b), "B", logits)
  labels = None if labels is None else np.asarray(labels).astype(np.int64)
  return compare_lib.compare(a, b, labels, alpha=alpha, top=top, bootstrap=bootstrap)


def format_table(results: Dict[str, Any]) -> str:
  """The markdown table a study prints, from its results (run_study's return value)."""
  from churn_jax.outputs import results_files  # pylint: disable=g-import-not-at-top
  return results_files.format_table(results)
