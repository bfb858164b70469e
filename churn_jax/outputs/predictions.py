"""Per-example test predictions of a method: WORKDIR/predictions/<method>.npz.

The file is the source of truth for every number a study reports: results.json lists it with
its sha256, and tables, plots and `churn-jax compare` read it back. Keys:

  deployed     (R, N, K) float32  deployed probabilities of each run
  members      (R, M, N, K) float32, only when M > 1: every member's probabilities
  model_members (R, M, E, N, K) float32, only when each model holds E > 1 members
               (BatchEnsemble): every member of every model; `deployed` averages over E
  labels       (N,) int           test labels
  example_ids  (N,) int           position of each example in the test split
  run_ids      (R,) int           the runs' ids (their seeds derive from them)
  prediction   ()  str            how `deployed` was formed: member0 | ensemble_mean

The zip is written byte-deterministically (fixed timestamps, fixed key order), so the same
predictions give the same sha256 and results.json stays bitwise reproducible.
"""

import hashlib
import io
import os
import zipfile
from typing import Any, Dict, Optional, Sequence

import numpy as np

from churn_jax.outputs import results_files
from churn_jax.runtime import fileio

DIRNAME = "predictions"


def relative_path(method: str) -> str:
  return os.path.join(DIRNAME, f"{method}.npz")


def npz_bytes(arrays: Dict[str, Any]) -> bytes:
  """An .npz (readable by np.load) whose bytes depend only on the arrays."""
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
    for key, value in arrays.items():
      info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
      with zf.open(info, "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
  return buf.getvalue()


def save(workdir: str, method: str, deployed: np.ndarray, member_probs: Optional[np.ndarray],
         labels: np.ndarray, run_ids: Sequence[int], prediction: str,
         example_ids: Optional[np.ndarray] = None) -> Dict[str, str]:
  """Writes the method's predictions atomically; returns {"path", "sha256"} for results.json.

  `path` is relative to the workdir, so a moved workdir stays valid. `member_probs`
  (R, M, N, K) is stored only when M > 1 (for M = 1 it equals `deployed`); (R, M, N, E, K)
  from a model with E members is stored as `model_members` (R, M, E, N, K).
  """
  deployed = np.asarray(deployed, np.float32)
  labels = np.asarray(labels)
  num_runs, num_examples, _ = deployed.shape
  if example_ids is None:
    example_ids = np.arange(num_examples)
  arrays = {"deployed": deployed}
  if member_probs is not None and np.ndim(member_probs) == 5:
    arrays["model_members"] = np.moveaxis(np.asarray(member_probs, np.float32), 3, 2)
  elif member_probs is not None and np.shape(member_probs)[1] > 1:
    arrays["members"] = np.asarray(member_probs, np.float32)
  arrays.update(labels=labels, example_ids=np.asarray(example_ids),
                run_ids=np.asarray(list(run_ids), np.int64), prediction=np.asarray(prediction))
  if len(arrays["run_ids"]) != num_runs or labels.shape != (num_examples,):
    raise ValueError(f"predictions of {method!r}: {len(arrays['run_ids'])} run ids and labels "
                     f"{labels.shape} do not match deployed {deployed.shape}")
  data = npz_bytes(arrays)
  rel = relative_path(method)
  results_files.atomic_write(os.path.join(workdir, rel), data)
  return {"path": rel, "sha256": hashlib.sha256(data).hexdigest()}


def load(path: str) -> Dict[str, np.ndarray]:
  """The arrays of a predictions file, local or gs:// (all loaded; `prediction` as a str)."""
  with np.load(io.BytesIO(fileio.read_bytes(path)), allow_pickle=False) as f:
    out = {key: f[key] for key in f.files}
  if "prediction" in out:
    out["prediction"] = str(out["prediction"])
  return out


def deployed_members(arrays: Dict[str, Any]) -> Optional[np.ndarray]:
  """(R, E, N, K): the members whose mean probabilities are `deployed`, or None.

  A deep ensemble's stack members (`members`, prediction ensemble_mean), a BatchEnsemble's
  members (`model_members`, of member 0 of the stack when the prediction is member0). None
  for single models, member-0 stacks of single models, and files written before
  `model_members` existed.
  """
  if "model_members" in arrays:
    models = arrays["model_members"]
    if arrays.get("prediction") == "member0":
      models = models[:, :1]
    return models.reshape((models.shape[0], -1) + models.shape[3:])
  if "members" in arrays and arrays.get("prediction") == "ensemble_mean":
    return arrays["members"]
  return None


def check(workdir: str, method: str, info: Optional[Dict[str, str]]) -> str:
  """The absolute path of a finished method's predictions; ValueError if missing or changed."""
  if not info or "path" not in info or "sha256" not in info:
    raise ValueError(f"results of method {method!r} list no predictions file (written by an "
                     f"older churn_jax); use a new --workdir")
  path = os.path.join(workdir, info["path"])
  # fileio: a gs:// workdir too (os.path.exists called every bucket object missing, so a
  # study in a bucket with a finished method could not be resumed).
  if not fileio.exists(path):
    raise ValueError(f"predictions of finished method {method!r} are missing: {path}; "
                     f"restore the file or use a new --workdir")
  digest = fileio.sha256(path)
  if digest != info["sha256"]:
    raise ValueError(f"predictions of finished method {method!r} changed since results.json "
                     f"was written ({path}: sha256 {digest[:12]}..., expected "
                     f"{info['sha256'][:12]}...); restore the file or use a new --workdir")
  return path
