"""MNIST-1D, generated locally and cached as an .npz file.

mnist1d's `get_dataset` downloads a pickle, so we only ever call its
`make_dataset` generator (offline, deterministic given the seed).
"""

import os
import random
import tempfile
import zipfile
from typing import Optional

from absl import logging
import numpy as np

from churn_jax.data.dataset import arrays_sha256, build_dataset, Dataset

NUM_CLASSES = 10
# Bump when the generation or the cache layout changes, so stale caches are
# not reused.
_CACHE_VERSION = 1
_KEYS = ("x_train", "y_train", "x_test", "y_test")


def default_cache_dir() -> str:
  """$CHURN_JAX_CACHE if set and non-empty, else ~/.cache/churn_jax."""
  return (os.environ.get("CHURN_JAX_CACHE")
          or os.path.join(os.path.expanduser("~"), ".cache", "churn_jax"))


def cache_path(num_samples: int, train_split: float, seed: int,
               cache_dir: Optional[str] = None) -> str:
  """The cache file for one set of generation arguments."""
  name = (f"mnist1d_v{_CACHE_VERSION}_n{num_samples}_split{train_split!r}"
          f"_seed{seed}.npz")
  return os.path.join(cache_dir or default_cache_dir(), name)


def _generate(num_samples: int, train_split: float, seed: int) -> dict:
  """Runs mnist1d's generator without disturbing the global RNGs."""
  # Imported lazily: mnist1d pulls in matplotlib and requests.
  import mnist1d.data  # pylint: disable=g-import-not-at-top

  args = mnist1d.data.get_dataset_args()
  args.num_samples = num_samples
  args.train_split = train_split
  args.seed = seed
  # make_dataset reseeds np.random and Python's random (mnist1d.utils.set_seed);
  # restore both so callers' randomness is unaffected by loading data.
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    data = mnist1d.data.make_dataset(args)
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  return {
      "x_train": np.asarray(data["x"], dtype=np.float32),
      "y_train": np.asarray(data["y"]).astype(np.int32),
      "x_test": np.asarray(data["x_test"], dtype=np.float32),
      "y_test": np.asarray(data["y_test"]).astype(np.int32),
  }


def _read_cache(path: str) -> Optional[dict]:
  """Returns the cached arrays, or None when absent or unreadable."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in _KEYS}
  except (OSError, ValueError, KeyError, TypeError, EOFError,
          zipfile.BadZipFile) as e:
    logging.warning("Corrupt MNIST-1D cache %s (%s); regenerating.", path,
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
    return None
  return arrays


def _write_cache(path: str, arrays: dict) -> None:
  """Writes atomically: a crash leaves either no file or a complete one."""
  directory = os.path.dirname(path)
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_",
                               suffix=".npz")
  except OSError as e:
    # Caching is an optimisation; an unwritable cache must not stop a run.
    logging.warning("Cannot cache MNIST-1D in %s: %s", directory, e)
    return
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    # mkstemp creates the file 0600; a cache is fine to share read-only.
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("Cannot cache MNIST-1D at %s: %s", path, e)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _with_hash(provenance: dict, arrays: dict) -> dict:
  """The generator's parameters plus a hash of what it generated."""
  return dict(provenance, sha256=arrays_sha256(*(arrays[k] for k in _KEYS)))


def load_mnist1d(num_samples: int = 20000, train_split: float = 0.8,
                 seed: int = 42, cache_dir: Optional[str] = None) -> Dataset:
  """Loads MNIST-1D: x float32 (N, 40), y int32 in [0, 10).

  mnist1d generates num_samples // 10 examples per class, then puts the first
  int(total * train_split) shuffled examples in the train split.

  Args:
    num_samples: total examples before the split (at least 10).
    train_split: fraction of examples in the train split, in (0, 1).
    seed: generation seed.
    cache_dir: directory of the .npz cache; None or '' means
      $CHURN_JAX_CACHE, or ~/.cache/churn_jax when that is unset.
  """
  num_samples, seed = int(num_samples), int(seed)
  train_split = float(train_split)
  if num_samples < NUM_CLASSES:
    raise ValueError(f"mnist1d: num_samples must be >= {NUM_CLASSES}, got "
                     f"{num_samples}")
  if not 0.0 < train_split < 1.0:
    raise ValueError(
        f"mnist1d: train_split must be in (0, 1), got {train_split}")
  path = cache_path(num_samples, train_split, seed, cache_dir)
  provenance = dict(source="mnist1d", num_samples=num_samples,
                    train_split=train_split, seed=seed,
                    cache_version=_CACHE_VERSION)
  arrays = _read_cache(path)
  if arrays is not None:
    try:
      return build_dataset("mnist1d", **arrays, source=path,
                           num_classes=NUM_CLASSES,
                           provenance=_with_hash(provenance, arrays))
    except ValueError as e:
      # A readable file with bad contents is as corrupt as a broken one.
      logging.warning("Invalid MNIST-1D cache (%s); regenerating.", e)
  arrays = _generate(num_samples, train_split, seed)
  # Validate before caching so a degenerate split is never written.
  dataset = build_dataset("mnist1d", **arrays, source="mnist1d",
                          num_classes=NUM_CLASSES,
                          provenance=_with_hash(provenance, arrays))
  _write_cache(path, arrays)
  return dataset
