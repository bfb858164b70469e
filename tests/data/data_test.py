"""Tests for churn_jax.data: loaders and validation (batch order and prefetch:
batches_test.py)."""

import os
import random
import shutil
import tempfile
import types
from unittest import mock

from absl.testing import absltest
import ml_collections
import numpy as np

from churn_jax import data
from churn_jax.data import mnist1d as mnist1d_lib

# Small enough to generate in well under a second.
_NUM_SAMPLES = 1000


def _tempdir(test: absltest.TestCase) -> str:
  # tempfile rather than absltest's create_tempdir, which needs parsed flags
  # and so fails under pytest.
  path = tempfile.mkdtemp(prefix="churn_jax_data_test_")
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


def _rng_states_equal(a, b) -> bool:
  # np.random.get_state(): (name, keys array, pos, has_gauss, cached_gaussian)
  return (a[0] == b[0] and np.array_equal(a[1], b[1])
          and tuple(a[2:]) == tuple(b[2:]))


class Mnist1dTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.cache_dir = _tempdir(self)

  def load(self, **kwargs):
    kwargs.setdefault("num_samples", _NUM_SAMPLES)
    return data.load_mnist1d(cache_dir=self.cache_dir, **kwargs)

  def test_shapes_dtypes_and_labels(self):
    ds = self.load(train_split=0.75)
    self.assertEqual(ds.name, "mnist1d")
    self.assertEqual(ds.x_train.shape, (750, 40))
    self.assertEqual(ds.x_test.shape, (250, 40))
    self.assertEqual((ds.num_train, ds.num_test), (750, 250))
    self.assertEqual(ds.input_shape, (40,))
    self.assertEqual(ds.x_train.dtype, np.float32)
    self.assertEqual(ds.x_test.dtype, np.float32)
    self.assertEqual(ds.y_train.dtype, np.int32)
    self.assertEqual(ds.y_test.dtype, np.int32)
    self.assertEqual(ds.num_classes, 10)
    labels = np.concatenate([ds.y_train, ds.y_test])
    np.testing.assert_array_equal(np.unique(labels), np.arange(10))
    self.assertTrue(np.all(np.isfinite(ds.x_train)))

  def test_cache_hit_skips_generation(self):
    import mnist1d.data  # pylint: disable=g-import-not-at-top
    # A mock (wrapping the real generator) is the only way to observe
    # whether make_dataset ran; identical arrays alone could also come
    # from a deterministic regeneration.
    with mock.patch.object(mnist1d.data, "make_dataset",
                           wraps=mnist1d.data.make_dataset) as gen:
      first = self.load()
      self.assertEqual(gen.call_count, 1)
      second = self.load()
      self.assertEqual(gen.call_count, 1)
    for key in ("x_train", "y_train", "x_test", "y_test"):
      np.testing.assert_array_equal(getattr(first, key),
                                    getattr(second, key))
      self.assertEqual(getattr(first, key).dtype,
                       getattr(second, key).dtype)
    # The atomic write leaves exactly the cache file, no temporaries.
    self.assertEqual(os.listdir(self.cache_dir), [
        os.path.basename(mnist1d_lib.cache_path(
            _NUM_SAMPLES, 0.8, 42, self.cache_dir))])

  def test_cache_is_keyed_by_arguments(self):
    a = self.load(seed=1)
    b = self.load(seed=2)
    self.assertFalse(np.array_equal(a.x_train, b.x_train))
    self.assertLen(os.listdir(self.cache_dir), 2)
    np.testing.assert_array_equal(self.load(seed=1).x_train, a.x_train)

  def test_global_rng_state_unchanged(self):
    np.random.seed(1234)
    random.seed(1234)
    np_before, py_before = np.random.get_state(), random.getstate()
    self.load()  # Generates (empty cache) ...
    self.load()  # ... and reads the cache.
    self.assertTrue(_rng_states_equal(np_before, np.random.get_state()))
    self.assertEqual(py_before, random.getstate())

  def test_corrupt_cache_is_regenerated(self):
    good = self.load()
    path = mnist1d_lib.cache_path(_NUM_SAMPLES, 0.8, 42, self.cache_dir)
    with open(path, "rb") as f:
      content = f.read()
    for corrupt in (b"not an npz at all", content[:len(content) // 2]):
      with open(path, "wb") as f:
        f.write(corrupt)
      with self.assertLogs("absl", level="WARNING") as logs:
        ds = self.load()
      self.assertIn("regenerating", "\n".join(logs.output))
      np.testing.assert_array_equal(ds.x_train, good.x_train)
      np.testing.assert_array_equal(ds.y_test, good.y_test)
      # The regenerated arrays replaced the corrupt file.
      with np.load(path) as npz:
        np.testing.assert_array_equal(npz["x_train"], good.x_train)

  def test_cache_with_wrong_contents_is_regenerated(self):
    good = self.load()
    path = mnist1d_lib.cache_path(_NUM_SAMPLES, 0.8, 42, self.cache_dir)
    np.savez(path, x_train=good.x_train)  # Keys missing.
    with self.assertLogs("absl", level="WARNING"):
      ds = self.load()
    np.testing.assert_array_equal(ds.x_test, good.x_test)

  def test_default_cache_dir_from_environment(self):
    with mock.patch.dict(os.environ, {"CHURN_JAX_CACHE": self.cache_dir}):
      self.assertEqual(mnist1d_lib.default_cache_dir(), self.cache_dir)
      data.load_mnist1d(num_samples=_NUM_SAMPLES)
    self.assertLen(os.listdir(self.cache_dir), 1)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, r"train_split must be in"):
      self.load(train_split=1.0)
    with self.assertRaisesRegex(ValueError, r"num_samples must be >= 10"):
      self.load(num_samples=5)


class DigitsTest(absltest.TestCase):

  def test_shapes_range_and_dtypes(self):
    ds = data.load_digits()
    self.assertEqual(ds.name, "digits")
    self.assertEqual(ds.num_train + ds.num_test, 1797)
    self.assertEqual(ds.num_test, 360)
    self.assertEqual(ds.input_shape, (8, 8, 1))
    self.assertEqual(ds.x_train.dtype, np.float32)
    self.assertEqual(ds.y_train.dtype, np.int32)
    self.assertEqual(ds.num_classes, 10)
    for x in (ds.x_train, ds.x_test):
      self.assertGreaterEqual(x.min(), 0.0)
      self.assertLessEqual(x.max(), 1.0)
    self.assertEqual(ds.x_train.max(), 1.0)

  def test_split_is_stratified(self):
    ds = data.load_digits(test_fraction=0.2)
    train_counts = np.bincount(ds.y_train, minlength=10)
    test_counts = np.bincount(ds.y_test, minlength=10)
    total = train_counts + test_counts
    # Each class puts its own share (to rounding) into the test split.
    np.testing.assert_array_less(np.abs(test_counts - 0.2 * total), 1.0)

  def test_split_is_deterministic_in_seed(self):
    a, b = data.load_digits(seed=3), data.load_digits(seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = data.load_digits(seed=4)
    self.assertFalse(np.array_equal(a.y_train, c.y_train))


class NpzTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = _tempdir(self)
    rng = np.random.default_rng(0)
    self.arrays = {
        "x_train": rng.normal(size=(20, 4, 3)),  # float64 on purpose.
        "y_train": np.arange(20) % 5,  # int64 on purpose.
        "x_test": rng.normal(size=(6, 4, 3)),
        "y_test": np.arange(6) % 5,
    }

  def save(self, name="toy", **overrides):
    arrays = dict(self.arrays, **overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = os.path.join(self.dir, name + ".npz")
    np.savez(path, **arrays)
    return path

  def test_round_trip(self):
    ds = data.load_npz(self.save("my_set"))
    self.assertEqual(ds.name, "my_set")
    self.assertEqual(ds.num_classes, 5)
    self.assertEqual(ds.input_shape, (4, 3))
    self.assertEqual(ds.x_train.dtype, np.float32)
    self.assertEqual(ds.y_test.dtype, np.int32)
    for key, value in self.arrays.items():
      np.testing.assert_allclose(getattr(ds, key), value, rtol=1e-6)

  def test_whole_float_labels_accepted(self):
    ds = data.load_npz(self.save(y_train=np.arange(20) % 5 * 1.0))
    self.assertEqual(ds.y_train.dtype, np.int32)
    np.testing.assert_array_equal(ds.y_train, np.arange(20) % 5)

  def test_missing_file(self):
    path = os.path.join(self.dir, "absent.npz")
    with self.assertRaisesRegex(ValueError,
                                "^npz file not found: .*absent.npz$"):
      data.load_npz(path)

  def test_not_an_npz(self):
    path = os.path.join(self.dir, "junk.npz")
    with open(path, "wb") as f:
      f.write(b"hello")
    with self.assertRaisesRegex(ValueError, "not a valid npz file"):
      data.load_npz(path)
    np.save(os.path.join(self.dir, "single.npy"), np.zeros(3))
    with self.assertRaisesRegex(ValueError, "not a valid npz file"):
      data.load_npz(os.path.join(self.dir, "single.npy"))

  def test_object_arrays_rejected(self):
    # Loading them would need pickle, which a data file must not use.
    ragged = np.empty(20, dtype=object)
    with self.assertRaisesRegex(ValueError, "not a valid npz file"):
      data.load_npz(self.save(x_train=ragged))

  def test_missing_key(self):
    path = self.save(y_test=None, extra=np.zeros(2))
    with self.assertRaisesRegex(
        ValueError, "missing keys y_test; keys present: extra, "
        "x_test, x_train, y_train$"):
      data.load_npz(path)

  def test_validation_errors(self):
    cases = {
        "length mismatch": (
            dict(y_train=np.zeros(19, np.int64)),
            "x_train has 20 examples but y_train has 19"),
        "empty split": (
            dict(x_test=np.zeros((0, 4, 3)), y_test=np.zeros(0, np.int64)),
            "test split is empty"),
        "non-integer labels": (
            dict(y_test=np.array([0, 1.5, 2, 3, 4, 0])),
            "y_test labels are not integer-valued"),
        "negative labels": (
            dict(y_train=np.arange(20) - 1),
            "y_train has negative labels"),
        "nan in x": (
            dict(x_test=np.full((6, 4, 3), np.nan)),
            "x_test contains NaN or infinite values"),
        "shape mismatch": (
            dict(x_test=np.zeros((6, 4, 2))),
            r"train examples have shape \(4, 3\) but test examples have "
            r"shape \(4, 2\)"),
        "non-numeric x": (
            dict(x_train=np.full((20, 4, 3), "a")),
            "x_train must be numeric"),
    }
    for case, (overrides, message) in cases.items():
      with self.subTest(case):
        path = self.save(**overrides)
        with self.assertRaisesRegex(ValueError, message) as ctx:
          data.load_npz(path)
        self.assertNotIn("\n", str(ctx.exception))
        self.assertIn(path, str(ctx.exception))

  def test_labels_out_of_given_range(self):
    a = self.arrays
    with self.assertRaisesRegex(ValueError,
                                r"src: labels out of range \[0, 3\)"):
      data.validate_arrays(a["x_train"], a["y_train"], a["x_test"],
                           a["y_test"], source="src", num_classes=3)
    self.assertEqual(
        data.validate_arrays(a["x_train"], a["y_train"], a["x_test"],
                             a["y_test"], source="src", num_classes=7), 7)


class GetDatasetTest(absltest.TestCase):

  def test_digits_from_config_dict(self):
    config = ml_collections.ConfigDict({"name": "digits", "seed": 0})
    ds = data.get_dataset(config)
    self.assertEqual(ds.name, "digits")

  def test_mnist1d_from_attribute_container(self):
    config = types.SimpleNamespace(
        name="mnist1d", npz_path="", cache_dir=_tempdir(self),
        num_samples=_NUM_SAMPLES, train_split=0.5, seed=7)
    ds = data.get_dataset(config)
    self.assertEqual((ds.num_train, ds.num_test), (500, 500))
    self.assertLen(os.listdir(config.cache_dir), 1)

  def test_npz_path_wins_over_name(self):
    path = os.path.join(_tempdir(self), "custom.npz")
    np.savez(path, x_train=np.zeros((4, 2)), y_train=np.arange(4),
             x_test=np.zeros((2, 2)), y_test=np.arange(2))
    config = ml_collections.ConfigDict({"name": "mnist1d",
                                        "npz_path": path})
    self.assertEqual(data.get_dataset(config).name, "custom")

  def test_unknown_and_incomplete(self):
    with self.assertRaisesRegex(
        ValueError, "^unknown dataset 'cifar'; known: digits, mnist1d, "
        "multiview, npz, cifar10, "):
      data.get_dataset(ml_collections.ConfigDict({"name": "cifar"}))
    with self.assertRaisesRegex(ValueError, "needs a non-empty npz_path"):
      data.get_dataset(ml_collections.ConfigDict(
          {"name": "npz", "npz_path": ""}))
    self.assertEqual(data.DATASET_NAMES, ("digits", "mnist1d", "multiview", "npz"))


if __name__ == "__main__":
  absltest.main()
