"""Offline datasets and per-run batch ordering for churn_jax.

Nothing here downloads: MNIST-1D is generated locally, digits ships with
scikit-learn, and anything else is read from a user-supplied .npz file or made by the user's
own function named by import path ("my_pkg.data:load", churn_jax/data/import_source.py).
"""

from churn_jax.data.dataset import build_dataset, Dataset, validate_arrays
from churn_jax.data.digits import load_digits
from churn_jax.data.mnist1d import load_mnist1d
from churn_jax.data import import_source
from churn_jax.data.npz import load_npz
from churn_jax.core import import_path
from churn_jax.data.ordering import RunBatches
from churn_jax.runtime.prefetch import prefetch

DATASET_NAMES = ("digits", "mnist1d", "multiview", "npz")
# Read with tfds.data_source from a prepared data_dir (churn_jax/data/tfds_source.py).
TFDS_NAMES = ("cifar10", "cifar100", "svhn_cropped", "imagenet2012", "i_naturalist2018")

__all__ = [
    "DATASET_NAMES",
    "TFDS_NAMES",
    "Dataset",
    "RunBatches",
    "build_dataset",
    "get_dataset",
    "load_digits",
    "load_mnist1d",
    "load_npz",
    "prefetch",
    "provenance",
    "validate_arrays",
]

_MISSING = object()


def provenance(dataset) -> dict:
  """Where a source's data came from (sha256 / TFDS name:version:split / generator args)."""
  return dict(getattr(dataset, "provenance", None) or {"source": dataset.name},
              name=dataset.name)


def _field(data_config, key: str, default):
  """data_config.get(key, default), also for plain attribute containers."""
  if hasattr(data_config, "get"):
    return data_config.get(key, default)
  return getattr(data_config, key, default)


def get_dataset(data_config) -> Dataset:
  """Loads the dataset a data config describes.

  Fields (all optional except `name` when no npz_path is given):
    name: 'mnist1d', 'digits', 'npz', one of TFDS_NAMES (tfds_source.from_config
      reads its other fields), or an import path 'package.module:function' called with
      every other field as a keyword (churn_jax/data/import_source.py).
    npz_path: when non-empty, the .npz file to load, whatever `name` says.
    cache_dir: MNIST-1D cache directory; '' means the default.
    num_samples, train_split: MNIST-1D generation (defaults 20000, 0.8).
    seed: MNIST-1D generation seed / digits split seed (loader defaults
      42 / 0 when absent).
  """
  npz_path = _field(data_config, "npz_path", "") or ""
  name = _field(data_config, "name", "") or ""
  if npz_path:
    return load_npz(npz_path)
  if import_path.is_import_path(name):
    items = data_config.items() if hasattr(data_config, "items") else vars(data_config).items()
    return import_source.load(name, {k: v for k, v in items if k not in ("name", "npz_path")})
  seed = _field(data_config, "seed", _MISSING)
  seed_kwargs = {} if seed is _MISSING or seed is None else {"seed": seed}
  if name == "mnist1d":
    return load_mnist1d(
        num_samples=_field(data_config, "num_samples", 20000),
        train_split=_field(data_config, "train_split", 0.8),
        cache_dir=_field(data_config, "cache_dir", "") or None,
        **seed_kwargs)
  if name == "digits":
    return load_digits(**seed_kwargs)
  if name == "multiview":
    # Allen-Zhu & Li 2020's multi-view data; every generator argument is a data-config key.
    from churn_jax.data import multiview
    return multiview.generate(**{k: data_config[k] for k in multiview.CONFIG_KEYS
                                 if k in data_config})
  if name in TFDS_NAMES:
    # Lazy import: tensorflow_datasets is slow to import and only these need it.
    from churn_jax.data import tfds_source
    return tfds_source.from_config(data_config)
  if name == "npz":
    raise ValueError("dataset 'npz' needs a non-empty npz_path")
  raise ValueError(
      f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES + TFDS_NAMES)}, or an import "
      f"path 'package.module:function'")
