"""Datasets named by import path: `config.data.name = "my_pkg.data:load"`.

The function is called with every other field of `config.data` as keyword arguments and
returns one of
  - arrays: a dict with keys x_train, y_train, x_test, y_test (optionally num_classes), or the
    tuple (x_train, y_train, x_test, y_test); checked like an npz file (dataset.validate_arrays)
    and held in memory as a `Dataset`, so per-run ordering, resume and every method work;
  - a source object with the interface the trainer reads (a streamed dataset): attributes
    name, num_classes, input_shape, num_train, num_test and methods
    train_batches(batch_size, seeds, start_step=0, num_steps=None, rows=None) -> iterator of
    (x (S, B, ...), y (S, B)), one stream per seed, a pure function of (seed, step), and
    test_batches(batch_size) -> iterator of (x, y) over the test split in order. Its
    `provenance` dict, if any, goes into the results' fingerprint; without one only its name
    does, so changed data would not be noticed.
"""

from typing import Any, Mapping

from churn_jax.core import import_path
from churn_jax.data.dataset import arrays_sha256, build_dataset

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
SOURCE_ATTRIBUTES = ("num_classes", "input_shape", "num_train", "num_test", "train_batches",
                     "test_batches")


def _is_source(obj) -> bool:
  return callable(getattr(obj, "train_batches", None))


def load(path: str, kwargs: Mapping[str, Any]):
  """Calls the function at `path` with `kwargs` and returns a Dataset or the source it built.

  Raises:
    ValueError: bad path, a signature that refuses the keywords, the function raised, or it
      returned neither arrays nor a source (one line).
  """
  fn = import_path.check_callable(path, import_path.resolve(path), 0, tuple(kwargs))
  try:
    out = fn(**kwargs)
  except Exception as e:  # pylint: disable=broad-except  # The user's code: one line, its type.
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise ValueError(f"data.name {path!r}: raised {type(e).__name__}: {first}") from None
  if _is_source(out):
    missing = [a for a in SOURCE_ATTRIBUTES if not hasattr(out, a)]
    if missing:
      raise ValueError(f"data.name {path!r}: returned a source without {', '.join(missing)}")
    if not getattr(out, "name", None):
      try:
        out.name = path
      except AttributeError:
        raise ValueError(f"data.name {path!r}: returned a source without a name") from None
    return out
  if isinstance(out, Mapping):
    missing = [k for k in ARRAY_KEYS if k not in out]
    if missing:
      raise ValueError(f"data.name {path!r}: returned a dict without {', '.join(missing)}; "
                       f"keys present: {', '.join(map(str, out)) or '(none)'}")
    arrays, num_classes = [out[k] for k in ARRAY_KEYS], out.get("num_classes")
  elif isinstance(out, (tuple, list)) and len(out) == 4:
    arrays, num_classes = list(out), None
  else:
    raise ValueError(f"data.name {path!r}: returned {type(out).__name__}; expected a dict with "
                     f"{', '.join(ARRAY_KEYS)}, a 4-tuple of those arrays, or a source with "
                     f"train_batches/test_batches")
  dataset = build_dataset(path, *arrays, source=f"data.name {path!r}",
                          num_classes=None if num_classes is None else int(num_classes))
  provenance = dict(source="import", path=path,
                    sha256=arrays_sha256(dataset.x_train, dataset.y_train, dataset.x_test,
                                         dataset.y_test))
  object.__setattr__(dataset, "provenance", provenance)  # Frozen: hashed after the cast.
  return dataset
