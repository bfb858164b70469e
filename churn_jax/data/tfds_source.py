"""TFDS image datasets of Bhojanapalli et al. 2021, read by index with numpy (no TensorFlow).

`tfds.data_source` gives random access to a prepared array_record dataset, so the batch of
any step can be computed directly: run r's example order in epoch e is
`default_rng([seed_r, e]).permutation(N)` (churn_jax.data.ordering, as for the in-memory
datasets) and its augmentation at step t is drawn from `default_rng([seed_r, t, _AUG])`.
Nothing is stateful, so training resumed at step k sees exactly the batches of an
uninterrupted run, and runs given equal seeds see identical batches.

Splits as in the paper: train / test for CIFAR-10/100 and SVHN (cropped digits, without
`extra`), train / validation for ImageNet and iNaturalist 2018. `validation_examples` > 0
holds out the last examples of train (for tuning); `eval_split='heldout'` evaluates on them.

32x32 datasets are decoded once into memory (uint8, ~150-230 MB); ImageNet-size datasets
are read, decoded and augmented per batch by a thread pool.

Nothing here downloads: the dataset must already be prepared in array_record format under
`data_dir` (docs/TPU.md), or the test must run under `tfds.testing.mock_data`.
"""

import concurrent.futures
import dataclasses
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from churn_jax.data import augment
from churn_jax.data.ordering import RunBatches
from churn_jax.runtime import distributed

_AUG = 0x617567  # Separates the augmentation stream from the shuffling stream of a seed.
_READ_CHUNK = 256  # Records per read call when loading a split into memory.
_PAD = 4  # Pixels of zero padding before the random crop of 32x32 datasets.


@dataclasses.dataclass(frozen=True)
class Spec:
  """What the paper's recipe needs to know about one TFDS dataset."""
  num_classes: int
  train_split: str
  eval_split: str
  num_train: int        # Sizes of the full splits (configs convert epochs to steps with them).
  num_eval: int
  mean: Tuple[float, float, float]
  std: Tuple[float, float, float]
  small: bool           # 32x32: decode into memory, pad-and-crop augmentation.
  flip: bool = True


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

SPECS = {
    "cifar10": Spec(10, "train", "test", 50_000, 10_000,
                    (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), small=True),
    "cifar100": Spec(100, "train", "test", 50_000, 10_000,
                     (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), small=True),
    "svhn_cropped": Spec(10, "train", "test", 73_257, 26_032,
                         (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), small=True,
                         flip=False),
    "imagenet2012": Spec(1000, "train", "validation", 1_281_167, 50_000,
                         _IMAGENET_MEAN, _IMAGENET_STD, small=False),
    # iNaturalist has no standard statistics of its own; ImageNet's are the usual choice.
    "i_naturalist2018": Spec(8142, "train", "validation", 437_513, 24_426,
                             _IMAGENET_MEAN, _IMAGENET_STD, small=False),
}
NAMES = tuple(SPECS)


def _open(name: str, split: str, data_dir: Optional[str]):
  """tfds.data_source for one split; never downloads. Errors are one line."""
  import tensorflow_datasets as tfds  # Lazy: importing tfds costs ~1 s.
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise FileNotFoundError(
        f"cannot open TFDS {name}:{split} under data_dir={data_dir or '~/tensorflow_datasets'} "
        f"({first}); prepare it first with `tfds build {name} --file_format=array_record "
        f"--data_dir=...` (docs/TPU.md)") from None


def _version(source) -> str:
  info = getattr(source, "dataset_info", None)
  return str(getattr(info, "version", "unknown"))


class _Records:
  """Examples [start, stop) of one data source, read by relative index."""

  def __init__(self, source, start: int, stop: int):
    self.source, self.start, self.stop = source, start, stop
    self._batched = True

  def __len__(self) -> int:
    return self.stop - self.start

  def read(self, indices: Sequence[int]) -> list:
    keys = [self.start + int(i) for i in indices]
    if self._batched:
      try:
        return list(self.source.__getitems__(keys))
      except TypeError:
        # tfds 4.9.10's mock_data installs __getitems__ unbound (missing `self`); reading one
        # record at a time works there, and real array_record sources never get here.
        self._batched = False
    return [self.source[k] for k in keys]


class TFDSSource:
  """The trainer's data source (see churn_jax.data.Dataset) for one TFDS image dataset.

  Attributes: name, num_classes, input_shape (H, W, C), num_train, num_test (after the
  held-out split and the caps), spec (the dataset's Spec).
  """

  def __init__(self, name: str, data_dir: str = "", validation_examples: int = 0,
               eval_split: str = "", image_size: int = 224, train_examples: int = 0,
               eval_examples: int = 0, num_workers: int = 16,
               process_index: Optional[int] = None, process_count: Optional[int] = None):
    """Opens `name` (one of NAMES).

    Args:
      name: TFDS name, e.g. 'cifar10'.
      data_dir: TFDS data directory (a local path or mounted bucket); '' = TFDS default.
      validation_examples: hold out the last this many train examples (never trained on).
      eval_split: '' = the paper's evaluation split (test, or validation for ImageNet and
        iNaturalist); 'heldout' = the held-out train examples.
      image_size: train/eval resolution of the ImageNet-size datasets (32x32 ones stay 32).
      train_examples, eval_examples: when > 0, use only the first this many (smoke runs).
      num_workers: threads decoding and augmenting ImageNet-size batches.
      process_index, process_count: this host among the hosts feeding one global batch
        (default: jax.process_index()/process_count()); each yields only its rows.
    """
    if name not in SPECS:
      raise ValueError(f"unknown TFDS dataset {name!r}; known: {', '.join(NAMES)}")
    if eval_split not in ("", "heldout"):
      raise ValueError(f"data.eval_split must be '' or 'heldout', got {eval_split!r}")
    self.name, self.spec = name, SPECS[name]
    self.num_classes = self.spec.num_classes
    self._process = (process_index, process_count)
    self._workers = max(1, int(num_workers))
    # One pool for the source's lifetime (PIL decoding and resizing release the GIL).
    self._pool = concurrent.futures.ThreadPoolExecutor(self._workers, "tfds_source")

    train = _open(name, self.spec.train_split, data_dir)
    n = len(train)
    held = int(validation_examples)
    if not 0 <= held < n:
      raise ValueError(f"data.validation_examples must be in [0, {n}) for {name}, got {held}")
    stop = n - held
    if train_examples:
      stop = min(stop, int(train_examples))
    self._train = _Records(train, 0, stop)
    if eval_split == "heldout":
      if not held:
        raise ValueError("data.eval_split='heldout' needs data.validation_examples > 0")
      self._eval = _Records(train, n - held, n)
    else:
      source = _open(name, self.spec.eval_split, data_dir)
      self._eval = _Records(source, 0, len(source))
    if eval_examples:
      self._eval.stop = self._eval.start + min(len(self._eval), int(eval_examples))
    # name:version:split of what is read, recorded in results.json and the fingerprint.
    eval_name = self.spec.train_split if eval_split == "heldout" else self.spec.eval_split
    self.provenance = dict(
        source="tfds", train=f"{name}:{_version(train)}:{self.spec.train_split}"
        f"[{self._train.start}:{self._train.stop}]",
        eval=f"{name}:{_version(train)}:{eval_name}[{self._eval.start}:{self._eval.stop}]")

    if self.spec.small:
      # 32x32 datasets fit in memory: decode and pad once, then a batch is numpy slicing.
      images, self._train_y = self._load(self._train)
      self._train_padded = augment.zero_pad(images, _PAD)
      self.input_shape = tuple(images.shape[1:])
    else:
      self.image_size = int(image_size)
      self.input_shape = (self.image_size, self.image_size, 3)
    self.num_train, self.num_test = len(self._train), len(self._eval)

  # -- reading ---------------------------------------------------------------------------

  def _load(self, records: _Records) -> Tuple[np.ndarray, np.ndarray]:
    """All of `records` as uint8 images (N, H, W, C) and int32 labels (N,)."""
    chunks = [range(i, min(i + _READ_CHUNK, len(records)))
              for i in range(0, len(records), _READ_CHUNK)]
    examples = [ex for part in self._pool.map(records.read, chunks) for ex in part]
    images = np.stack([np.asarray(ex["image"], np.uint8) for ex in examples])
    labels = np.asarray([ex["label"] for ex in examples], np.int32)
    return images, labels

  def _read_parallel(self, records: _Records, indices: np.ndarray) -> list:
    """Examples at `indices` (any order), read in chunks by the thread pool."""
    parts = np.array_split(indices, min(self._workers, len(indices)))
    return [ex for part in self._pool.map(records.read, parts) for ex in part]

  # -- the trainer's protocol ------------------------------------------------------------

  def host_rows(self, batch_size: int) -> Tuple[int, int]:
    """[start, stop) of the global batch this host produces (the whole batch on one host)."""
    return distributed.host_rows(batch_size, *self._process)

  def steps_per_epoch(self, batch_size: int) -> int:
    return self.num_train // batch_size

  def train_batches(self, batch_size: int, seeds: Sequence[int], start_step: int = 0,
                    num_steps: Optional[int] = None, rows: Optional[Tuple[int, int]] = None
                    ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yields (x (R, b, H, W, C) float32, y (R, b) int32) from `start_step`.

    b = batch_size on one host, batch_size / process_count per host otherwise; the rows a
    host yields are the same rows of the batch one host would yield (augmentation included).
    `rows=(start, stop)` names the rows (the trainer derives them from the batch sharding).
    """
    order = RunBatches(np.arange(self.num_train), np.arange(self.num_train), batch_size, seeds)
    lo, hi = self.host_rows(batch_size) if rows is None else rows
    step = int(start_step)
    end = None if num_steps is None else step + int(num_steps)
    while end is None or step < end:
      rngs = [np.random.default_rng([s, step, _AUG]) for s in order.seeds]
      idx = order.indices(step)[:, lo:hi]
      if self.spec.small:
        yield self._small_batch(idx, rngs, batch_size, lo, hi)
      else:
        yield self._large_batch(idx, rngs, batch_size, lo, hi)
      step += 1

  def _small_batch(self, idx, rngs, batch_size, lo, hi):
    num_runs, rows = idx.shape
    height, width = self.input_shape[:2]
    out = np.empty((num_runs, rows) + self.input_shape, np.float32)

    def one_run(r):
      # Parameters are drawn for the global batch, then sliced: independent of host count.
      offsets, flips = augment.crop_flip_params(rngs[r], batch_size, _PAD, self.spec.flip)
      crops = augment.crop_from_padded(self._train_padded, idx[r], offsets[lo:hi],
                                       flips[lo:hi], height, width)
      out[r] = augment.normalize(crops, self.spec.mean, self.spec.std)
    list(self._pool.map(one_run, range(num_runs)))  # numpy copies release the GIL.
    return out, self._train_y[idx]

  def _large_batch(self, idx, rngs, batch_size, lo, hi):
    num_runs, rows = idx.shape
    params = [augment.resized_crop_params(rng, batch_size) for rng in rngs]
    unique, inverse = np.unique(idx, return_inverse=True)  # Runs may share examples.
    examples = self._read_parallel(self._train, unique)
    images = [np.asarray(ex["image"], np.uint8) for ex in examples]
    labels = np.asarray([ex["label"] for ex in examples], np.int32)
    inverse = inverse.reshape(idx.shape)

    def transform(rb):
      r, b = divmod(rb, rows)
      uniforms, flips = params[r]
      return augment.random_resized_crop(images[inverse[r, b]], uniforms[lo + b],
                                         bool(flips[lo + b]), self.image_size)
    x = np.stack(list(self._pool.map(transform, range(num_runs * rows))))
    x = augment.normalize(x, self.spec.mean, self.spec.std)
    return x.reshape((num_runs, rows) + x.shape[1:]), labels[inverse]

  def test_batches(self, batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yields (x, y) over the whole evaluation split in order; the last batch may be smaller.

    Every host yields the same full batches: predictions use one x for all runs and the
    evaluation split is small next to training.
    """
    if self.spec.small and not hasattr(self, "_eval_x"):
      self._eval_x, self._eval_y = self._load(self._eval)
    for i in range(0, len(self._eval), batch_size):
      if self.spec.small:
        x, y = self._eval_x[i:i + batch_size], self._eval_y[i:i + batch_size]
      else:
        stop = min(i + batch_size, len(self._eval))
        examples = self._read_parallel(self._eval, np.arange(i, stop))
        resize_to = int(round(self.image_size * 256 / 224))  # 256 for 224 crops.
        crop = lambda ex: augment.center_crop(np.asarray(ex["image"], np.uint8), resize_to,
                                              self.image_size)
        x = np.stack(list(self._pool.map(crop, examples)))
        y = np.asarray([ex["label"] for ex in examples], np.int32)
      yield augment.normalize(x, self.spec.mean, self.spec.std), y


def from_config(data_config) -> TFDSSource:
  """TFDSSource from a config's `data` block (fields as in experiments/cifar10.py)."""
  if hasattr(data_config, "get"):
    get = data_config.get
  else:  # Plain attribute containers, as churn_jax.data.get_dataset accepts.
    get = lambda key, default=None: getattr(data_config, key, default)
  return TFDSSource(
      name=get("name"), data_dir=get("data_dir", "") or "",
      validation_examples=int(get("validation_examples", 0) or 0),
      eval_split=get("eval_split", "") or "", image_size=int(get("image_size", 224)),
      train_examples=int(get("train_examples", 0) or 0),
      eval_examples=int(get("eval_examples", 0) or 0),
      num_workers=int(get("num_workers", 16)))
