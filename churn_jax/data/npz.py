"""User-supplied datasets stored as .npz files."""

import os
import pathlib
import zipfile

import numpy as np

from churn_jax.data.dataset import build_dataset, Dataset
from churn_jax.runtime import fileio

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
  provenance = dict(source="npz", path=os.path.abspath(path), sha256=fileio.sha256(path))
  dataset = build_dataset(pathlib.Path(path).stem, **arrays, source=path,
                          provenance=provenance)
  _check_classes(dataset, path)
  return dataset


def _check_classes(dataset: Dataset, path: str) -> None:
  """The class count is inferred as max label + 1: refuse labels that leave classes empty.

  A label of 1000 in 10-class data would otherwise silently train a 1001-class model.
  """
  missing = dataset.num_classes - len(np.unique(dataset.y_train))
  if missing:
    raise ValueError(
        f"{path}: labels must be 0..K-1 with every class in y_train, but the max label is "
        f"{dataset.num_classes - 1} and {missing} of those {dataset.num_classes} classes "
        f"have no training example")
