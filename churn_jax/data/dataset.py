"""The in-memory dataset record shared by every data source, and its checks.

Every loader funnels its arrays through `validate_arrays` so that a bad file or
a generator bug fails at load time with one readable line, not deep inside a
jitted training step.
"""

import dataclasses
import hashlib
import itertools
from typing import Optional

import numpy as np


# eq=False: the generated __eq__ would compare arrays elementwise and raise.
@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train/test arrays of one classification task.

  x arrays are float32 with shape (N, *input_shape); y arrays are int32
  labels in [0, num_classes).
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  # Where the arrays came from, recorded in results.json and in the results' fingerprint:
  # the npz's sha256, or the generator's parameters (churn_jax.data.provenance).
  provenance: dict = dataclasses.field(default_factory=dict)

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example (without the batch dimension)."""
    return tuple(self.x_train.shape[1:])

  @property
  def num_train(self) -> int:
    return int(self.x_train.shape[0])

  @property
  def num_test(self) -> int:
    return int(self.x_test.shape[0])

  # The source protocol the trainer reads (a TFDS source streams the same two methods).
  def train_batches(self, batch_size: int, seeds, start_step: int = 0,
                    num_steps: Optional[int] = None, rows=None):
    """Yields (x (R, B, ...), y (R, B)) from `start_step`, one data order per run seed.

    `rows=(start, stop)`: only those rows of each batch (one process's share).
    """
    from churn_jax.data.ordering import RunBatches  # ordering is independent of Dataset.
    batches = RunBatches(self.x_train, self.y_train, batch_size, seeds)
    if rows is None:
      return batches.iterate(start_step, num_steps)
    steps = itertools.count(start_step) if num_steps is None else range(
        start_step, start_step + num_steps)
    return ((self.x_train[i], self.y_train[i])
            for i in (batches.indices(s)[:, slice(*rows)] for s in steps))

  def test_batches(self, batch_size: int):
    """Yields (x, y) over the whole test split in order; the last batch may be smaller."""
    for i in range(0, self.num_test, batch_size):
      yield self.x_test[i:i + batch_size], self.y_test[i:i + batch_size]


def _check_split(x: np.ndarray, y: np.ndarray, split: str, source: str) -> None:
  if x.ndim < 1:
    raise ValueError(f"{source}: x_{split} must have a leading example axis")
  if y.ndim != 1:
    raise ValueError(
        f"{source}: y_{split} must be 1-D labels, got shape {y.shape}")
  if len(x) != len(y):
    raise ValueError(
        f"{source}: x_{split} has {len(x)} examples but y_{split} has "
        f"{len(y)}")
  if len(x) == 0:
    raise ValueError(f"{source}: {split} split is empty")
  if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
    raise ValueError(
        f"{source}: x_{split} must be numeric, got dtype {x.dtype}")
  if np.iscomplexobj(x):
    raise ValueError(f"{source}: x_{split} must be real, got dtype {x.dtype}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{source}: x_{split} contains NaN or infinite values")
  if not (np.issubdtype(y.dtype, np.integer)
          or np.issubdtype(y.dtype, np.floating)):
    raise ValueError(
        f"{source}: y_{split} must be integer labels, got dtype {y.dtype}")
  if np.issubdtype(y.dtype, np.floating):
    # Float labels are accepted only when they hold whole numbers (as a
    # careless np.savez of float arrays produces).
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
      raise ValueError(f"{source}: y_{split} labels are not integer-valued")
  if np.any(y < 0):
    raise ValueError(f"{source}: y_{split} has negative labels "
                     f"(min {y.min()})")


def validate_arrays(x_train, y_train, x_test, y_test, source: str,
                    num_classes: Optional[int] = None) -> int:
  """Checks a train/test split and returns its number of classes.

  Args:
    x_train, y_train, x_test, y_test: array-likes; x of shape (N, ...), y (N,).
    source: where the arrays came from, used as the prefix of error messages.
    num_classes: when given, labels must lie in [0, num_classes); otherwise
      the number of classes is inferred as max label + 1.

  Returns:
    The number of classes.

  Raises:
    ValueError: with a single-line message naming `source` and the problem.
  """
  x_train, y_train = np.asarray(x_train), np.asarray(y_train)
  x_test, y_test = np.asarray(x_test), np.asarray(y_test)
  _check_split(x_train, y_train, "train", source)
  _check_split(x_test, y_test, "test", source)
  if x_train.shape[1:] != x_test.shape[1:]:
    raise ValueError(
        f"{source}: train examples have shape {x_train.shape[1:]} but test "
        f"examples have shape {x_test.shape[1:]}")
  max_label = int(max(y_train.max(), y_test.max()))
  if num_classes is None:
    if max_label >= np.iinfo(np.int32).max:
      raise ValueError(f"{source}: label {max_label} does not fit int32")
    return max_label + 1
  if max_label >= num_classes:
    raise ValueError(
        f"{source}: labels out of range [0, {num_classes}) "
        f"(max label {max_label})")
  return int(num_classes)


def arrays_sha256(*arrays) -> str:
  """sha256 over the dtypes, shapes and bytes of arrays (the content of generated data)."""
  digest = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    digest.update(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.tobytes())
  return digest.hexdigest()


def build_dataset(name: str, x_train, y_train, x_test, y_test, source: str,
                  num_classes: Optional[int] = None,
                  provenance: Optional[dict] = None) -> Dataset:
  """Validates arrays and packs them as a Dataset with float32 x, int32 y."""
  num_classes = validate_arrays(x_train, y_train, x_test, y_test, source,
                                num_classes)
  x_train = np.asarray(x_train, dtype=np.float32)
  x_test = np.asarray(x_test, dtype=np.float32)
  # Finite float64 values beyond float32's range turn into inf on the cast.
  for split, x in (("train", x_train), ("test", x_test)):
    if not np.all(np.isfinite(x)):
      raise ValueError(f"{source}: x_{split} values overflow float32")
  return Dataset(
      name=name,
      x_train=x_train,
      y_train=np.asarray(y_train).astype(np.int32),
      x_test=x_test,
      y_test=np.asarray(y_test).astype(np.int32),
      num_classes=num_classes,
      provenance=dict(provenance or {}),
  )


def split_validation(dataset: Dataset, fraction: float, seed: int = 0):
  """(train, validation): a held-out `fraction` of the training examples, chosen by `seed`.

  Selecting a coefficient on the test split (as Bhojanapalli et al. 2021, App. A, do) reports
  a biased test number; selecting on this split, which no run trains on, is the honest
  alternative. `validation` is a Dataset whose test split is the held-out examples.
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
  if not hasattr(dataset, "x_train"):
    raise ValueError(f"dataset {dataset.name!r} is streamed; a validation split needs an "
                     f"in-memory dataset")
  order = np.random.default_rng(seed).permutation(dataset.num_train)
  num_val = int(round(fraction * dataset.num_train))
  if not 0 < num_val < dataset.num_train:
    raise ValueError(f"validation fraction {fraction} of {dataset.num_train} training "
                     f"examples leaves an empty split")
  val, keep = np.sort(order[:num_val]), np.sort(order[num_val:])
  train = dataclasses.replace(dataset, x_train=dataset.x_train[keep],
                              y_train=dataset.y_train[keep])
  validation = dataclasses.replace(train, name=dataset.name + "/validation",
                                   x_test=dataset.x_train[val], y_test=dataset.y_train[val])
  return train, validation
