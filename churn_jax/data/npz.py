"""User-supplied datasets stored as .npz files."""

import os
import pathlib
import zipfile

import numpy as np

from churn_jax import fileio
from churn_jax.data.dataset import Dataset, build_dataset

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _first_line(e: Exception) -> str:
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__


def load_npz(path) -> Dataset:
  """Loads an .npz with arrays x_train, y_train, x_test, y_test.

  x is cast to float32 and y to int32; the dataset is named after the file
  stem. Every problem raises a ValueError with a one-line message.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    raise ValueError(f"npz path is a directory, not a file: {path}")
  if not os.path.isfile(path):
    raise ValueError(f"npz file not found: {path}")
  if not zipfile.is_zipfile(path):
    # np.load would try a pickle (refused below) or a bare .npy; say what it is not.
    raise ValueError(f"not a valid npz file: {path} (not a zip archive written by "
                     f"np.savez; expected keys {', '.join(REQUIRED_KEYS)})")
  try:
    # allow_pickle=False: a data file must not be able to run code.
    loaded = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(
        f"not a valid npz file: {path} ({_first_line(e)})") from None
  if not isinstance(loaded, np.lib.npyio.NpzFile):
    raise ValueError(
        f"not a valid npz file: {path} (holds a single .npy array)")
  with loaded:
    present = sorted(loaded.files)
    missing = [k for k in REQUIRED_KEYS if k not in present]
    if missing:
      raise ValueError(
          f"npz file {path} is missing keys {', '.join(missing)}; keys "
          f"present: {', '.join(present) or '(none)'}")
    try:
      arrays = {k: loaded[k] for k in REQUIRED_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
      # Truncated members or object arrays (which need pickle).
      raise ValueError(
          f"not a valid npz file: {path} ({_first_line(e)})") from None
  _check_classes(arrays, path)
  provenance = dict(source="npz", path=os.path.abspath(path), sha256=fileio.sha256(path))
  return build_dataset(pathlib.Path(path).stem, **arrays, source=path,
                       provenance=provenance)


def _check_classes(arrays: dict, path: str) -> None:
  """The class count is inferred as max label + 1: refuse labels that leave classes empty.

  A label of 1000 in 10-class data would otherwise silently train a 1001-class model.
  """
  y_train = np.asarray(arrays["y_train"])
  y_test = np.asarray(arrays["y_test"])
  if not (y_train.ndim == 1 and y_test.ndim == 1 and y_train.size and y_test.size):
    return  # build_dataset names these problems.
  try:
    labels = np.concatenate([y_train, y_test]).astype(np.int64)
  except (TypeError, ValueError, OverflowError):
    return
  if labels.min() < 0:
    return
  num_classes = int(labels.max()) + 1
  missing = num_classes - len(np.unique(y_train.astype(np.int64)))
  if missing:
    raise ValueError(
        f"{path}: labels must be 0..K-1 with every class in y_train, but the max label is "
        f"{num_classes - 1} and {missing} of those {num_classes} classes have no training "
        f"example")
