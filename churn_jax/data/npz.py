"""User-supplied datasets stored as .npz files."""

import os
import pathlib
import zipfile

import numpy as np

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
  if not os.path.isfile(path):
    raise ValueError(f"npz file not found: {path}")
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
  return build_dataset(pathlib.Path(path).stem, **arrays, source=path)
