"""Tests for the TFDS input pipeline (churn_jax/data/tfds_source.py), its augmentation and the
multi-host helpers, on tfds.testing.mock_data (random examples; nothing is downloaded)."""

import io
import shutil
import tempfile

from absl.testing import absltest
from etils import epath
import jax
import ml_collections
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder
from tensorflow_datasets.image_classification import cifar

from churn_jax import data
from churn_jax.data import augment, tfds_source
from churn_jax.runtime import distributed

_N = 40  # Mock examples per split: 5 steps of 8 per epoch, so 7 steps cross an epoch.


def _bounds(spec):
  """Smallest and largest normalised values (pixel 0 and 255)."""
  lo = (0 - np.asarray(spec.mean)) / np.asarray(spec.std)
  hi = (1 - np.asarray(spec.mean)) / np.asarray(spec.std)
  return lo.min() - 1e-5, hi.max() + 1e-5


def _batches(source, seeds, start=0, num=7, batch_size=8):
  return list(source.train_batches(batch_size, seeds, start, num))


class TFDSSourceTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.enter_context(tfds.testing.mock_data(num_examples=_N))

  def source(self, name="cifar10", **kwargs):
    kwargs.setdefault("num_workers", 2)
    return tfds_source.TFDSSource(name, **kwargs)

  def test_shapes_dtypes_and_ranges(self):
    for name, shape in (("cifar10", (32, 32, 3)), ("svhn_cropped", (32, 32, 3)),
                        ("imagenet2012", (24, 24, 3))):
      with self.subTest(name):
        src = self.source(name, image_size=24)
        self.assertEqual(src.input_shape, shape)
        self.assertEqual((src.num_train, src.num_test), (_N, _N))
        self.assertEqual(src.num_classes, tfds_source.SPECS[name].num_classes)
        x, y = _batches(src, [3, 4, 5], num=1)[0]
        self.assertEqual(x.shape, (3, 8) + shape)
        self.assertEqual((x.dtype, y.shape, y.dtype), (np.float32, (3, 8), np.int32))
        lo, hi = _bounds(src.spec)
        self.assertBetween(float(x.min()), lo, hi)
        self.assertBetween(float(x.max()), lo, hi)
        self.assertTrue(((y >= 0) & (y < src.num_classes)).all())

  def test_runs_with_equal_seeds_match_and_different_seeds_differ(self):
    for name in ("cifar10", "imagenet2012"):
      with self.subTest(name):
        (x, y), = _batches(self.source(name, image_size=16), [7, 8, 7], num=1)
        np.testing.assert_array_equal(x[0], x[2])
        np.testing.assert_array_equal(y[0], y[2])
        self.assertFalse(np.array_equal(x[0], x[1]))

  def test_resumes_exactly(self):
    for name in ("cifar10", "imagenet2012"):
      with self.subTest(name):
        src = self.source(name, image_size=16)
        full = _batches(src, [1, 2], start=0, num=7)
        resumed = _batches(self.source(name, image_size=16), [1, 2], start=4, num=3)
        for (xa, ya), (xb, yb) in zip(full[4:], resumed):
          np.testing.assert_array_equal(xa, xb)
          np.testing.assert_array_equal(ya, yb)
        # Epochs reshuffle and steps re-augment: step 5 (epoch 1) is not step 0 again.
        self.assertFalse(np.array_equal(full[0][0], full[5][0]))

  def test_hosts_split_the_global_batch(self):
    for name in ("cifar10", "imagenet2012"):
      with self.subTest(name):
        whole = _batches(self.source(name, image_size=16), [1, 2], num=2)
        parts = [_batches(self.source(name, image_size=16, process_index=i, process_count=2),
                          [1, 2], num=2) for i in range(2)]
        for step, (x, y) in enumerate(whole):
          self.assertEqual(parts[0][step][0].shape[:2], (2, 4))
          np.testing.assert_array_equal(
              np.concatenate([p[step][0] for p in parts], axis=1), x)
          np.testing.assert_array_equal(
              np.concatenate([p[step][1] for p in parts], axis=1), y)

  def test_eval_is_ordered_complete_and_deterministic(self):
    for name in ("cifar10", "imagenet2012"):
      with self.subTest(name):
        src = self.source(name, image_size=16)
        first = list(src.test_batches(16))
        self.assertEqual([len(y) for _, y in first], [16, 16, 8])
        again = list(self.source(name, image_size=16).test_batches(16))
        for (xa, ya), (xb, yb) in zip(first, again):
          np.testing.assert_array_equal(xa, xb)
          np.testing.assert_array_equal(ya, yb)

  def test_heldout_split_and_caps(self):
    src = self.source(validation_examples=8, eval_split="heldout")
    self.assertEqual((src.num_train, src.num_test), (_N - 8, 8))
    raw = tfds.data_source("cifar10", split="train")
    expected = np.stack([raw[i]["image"] for i in range(_N - 8, _N)])
    (x, y), = src.test_batches(100)
    np.testing.assert_allclose(x, augment.normalize(expected, src.spec.mean, src.spec.std))
    np.testing.assert_array_equal(y, [raw[i]["label"] for i in range(_N - 8, _N)])
    capped = self.source(validation_examples=8, train_examples=16, eval_examples=5)
    self.assertEqual((capped.num_train, capped.num_test), (16, 5))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "unknown TFDS dataset 'mnist'"):
      self.source("mnist")
    with self.assertRaisesRegex(ValueError, "validation_examples must be in"):
      self.source(validation_examples=_N)
    with self.assertRaisesRegex(ValueError, "needs data.validation_examples > 0"):
      self.source(eval_split="heldout")

  def test_train_rows_are_crops_of_the_documented_order(self):
    src = self.source("svhn_cropped")
    (x, y), = _batches(src, [9], num=1)
    order = data.RunBatches(np.arange(_N), np.arange(_N), 8, [9]).indices(0)[0]
    raw = tfds.data_source("svhn_cropped", split="train")
    np.testing.assert_array_equal(y[0], [raw[i]["label"] for i in order])
    for row, i in zip(x[0], order):
      padded = augment.zero_pad(np.asarray(raw[i]["image"])[None], 4)[0]
      norm = augment.normalize(padded, src.spec.mean, src.spec.std)
      # Some 32x32 window of the padded image, never mirrored (SVHN has no flip).
      self.assertTrue(any(np.array_equal(row, norm[t:t + 32, l:l + 32])
                          for t in range(9) for l in range(9)))

  def test_get_dataset_dispatches_tfds_names(self):
    cfg = ml_collections.ConfigDict(dict(name="svhn_cropped", data_dir="", num_workers=2,
                                         validation_examples=0, eval_split=""))
    src = data.get_dataset(cfg)
    self.assertIsInstance(src, tfds_source.TFDSSource)
    self.assertFalse(src.spec.flip)
    self.assertEqual(set(data.TFDS_NAMES), set(tfds_source.NAMES))


def _encoded(image: np.ndarray, fmt: str) -> bytes:
  # Encoded with PIL: TFDS would need TensorFlow to encode numpy images itself.
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format=fmt)
  return buf.getvalue()


def _examples(n, seed, size, fmt):
  """(key, example) pairs with random images; sizes vary when `size` is a range."""
  rng = np.random.default_rng(seed)
  for i in range(n):
    h, w = (size, size) if isinstance(size, int) else rng.integers(*size, 2)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yield f"{seed}_{i}", image, int(rng.integers(0, 10)), _encoded(image, fmt)


# The real builders' features and versions, with random examples instead of downloads.
# _get_pkg_dir_path points TFDS at the real builder's metadata files; code_path skips TFDS's
# module-path lookup (it needs importlib_resources, not installed, for modules in a package).
class _TinyCifar10(cifar.Cifar10, skip_registration=True):
  name = "cifar10"
  code_path = epath.Path(__file__)
  images = {}

  @classmethod
  def _get_pkg_dir_path(cls):
    return cifar.Cifar10._get_pkg_dir_path()

  def _split_generators(self, dl_manager):
    return {"train": self._generate(24, 0), "test": self._generate(10, 1)}

  def _generate(self, n, seed):
    for key, image, label, png in _examples(n, seed, 32, "PNG"):
      self.images[png] = image
      yield key, {"id": key, "image": png, "label": label}


class _TinyImagenet(imagenet2012_dataset_builder.Builder, skip_registration=True):
  name = "imagenet2012"
  code_path = epath.Path(__file__)

  @classmethod
  def _get_pkg_dir_path(cls):
    return imagenet2012_dataset_builder.Builder._get_pkg_dir_path()

  def _split_generators(self, dl_manager):
    return {"train": self._generate(16, 0), "validation": self._generate(6, 1)}

  def _generate(self, n, seed):
    for key, _, label, jpeg in _examples(n, seed, (20, 60), "JPEG"):
      yield key, {"file_name": f"{key}.JPEG", "image": jpeg, "label": label}


class ArrayRecordTest(absltest.TestCase):
  """The real read path: array_record files on disk, batched reads, PIL decoding."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = tempfile.mkdtemp(prefix="churn_jax_tfds_")
    for builder in (_TinyCifar10, _TinyImagenet):
      builder(data_dir=cls.data_dir, file_format="array_record").download_and_prepare()

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.data_dir, ignore_errors=True)
    super().tearDownClass()

  def test_cifar10_decodes_the_written_pixels(self):
    src = tfds_source.TFDSSource("cifar10", data_dir=self.data_dir, num_workers=2)
    self.assertEqual((src.num_train, src.num_test, src.input_shape), (24, 10, (32, 32, 3)))
    written = {image.tobytes() for image in _TinyCifar10.images.values()}
    raw = tfds.data_source("cifar10", split="test", data_dir=self.data_dir, download=False)
    (x, y), = src.test_batches(100)
    for i in range(10):
      self.assertIn(raw[i]["image"].tobytes(), written)  # PNG is lossless.
      np.testing.assert_allclose(
          x[i], augment.normalize(raw[i]["image"], src.spec.mean, src.spec.std))
      self.assertEqual(y[i], raw[i]["label"])
    full = _batches(src, [1, 2], num=4)
    resumed = _batches(tfds_source.TFDSSource("cifar10", data_dir=self.data_dir), [1, 2], 2, 2)
    np.testing.assert_array_equal(full[3][0], resumed[1][0])

  def test_imagenet_reads_variable_size_jpegs(self):
    src = tfds_source.TFDSSource("imagenet2012", data_dir=self.data_dir, image_size=16,
                                 num_workers=3)
    self.assertEqual((src.num_train, src.num_test, src.num_classes), (16, 6, 1000))
    (x, y), = _batches(src, [4, 4, 5], num=1, batch_size=4)
    self.assertEqual((x.shape, y.shape), ((3, 4, 16, 16, 3), (3, 4)))
    np.testing.assert_array_equal(x[0], x[1])
    self.assertEqual([len(y) for _, y in src.test_batches(4)], [4, 2])


class MissingDataTest(absltest.TestCase):

  def test_unprepared_data_dir_fails_in_one_line_without_download(self):
    empty = tempfile.mkdtemp(prefix="churn_jax_tfds_")
    self.addCleanup(shutil.rmtree, empty, ignore_errors=True)
    with self.assertRaisesRegex(FileNotFoundError, "cannot open TFDS cifar10:train") as cm:
      tfds_source.TFDSSource("cifar10", data_dir=empty)
    self.assertNotIn("\n", str(cm.exception))
    self.assertIn("tfds build cifar10 --file_format=array_record", str(cm.exception))


class AugmentTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.images = np.random.default_rng(0).integers(0, 256, (6, 8, 10, 3), dtype=np.uint8)

  def test_centered_crop_is_identity_and_flip_is_a_flip(self):
    center = np.full((6, 2), 4)
    same = augment.pad_crop_flip(self.images, center, np.zeros(6, bool), pad=4)
    np.testing.assert_array_equal(same, self.images)
    flipped = augment.pad_crop_flip(self.images, center, np.ones(6, bool), pad=4)
    np.testing.assert_array_equal(flipped, self.images[:, :, ::-1])
    np.testing.assert_array_equal(augment.flip_left_right(flipped), self.images)

  def test_crop_preserves_shape_and_shifts_content(self):
    corner = augment.pad_crop_flip(self.images, np.zeros((6, 2), int), np.zeros(6, bool), 4)
    self.assertEqual(corner.shape, self.images.shape)
    self.assertEqual(corner.dtype, np.uint8)
    np.testing.assert_array_equal(corner[:, :4], 0)       # Zero padding above ...
    np.testing.assert_array_equal(corner[:, :, :4], 0)    # ... and to the left.
    np.testing.assert_array_equal(corner[:, 4:, 4:], self.images[:, :4, :6])

  def test_grouped_crop_matches_a_per_example_reference(self):
    offsets, flips = augment.crop_flip_params(np.random.default_rng(6), 6, 4, flip=True)
    out = augment.pad_crop_flip(self.images, offsets, flips, pad=4)
    padded = augment.zero_pad(self.images, 4)
    for i, (top, left) in enumerate(offsets):
      ref = padded[i, top:top + 8, left:left + 10]
      np.testing.assert_array_equal(out[i], ref[:, ::-1] if flips[i] else ref)

  def test_crop_flip_params(self):
    offsets, flips = augment.crop_flip_params(np.random.default_rng(1), 1000, 4, flip=True)
    self.assertEqual((offsets.min(), offsets.max()), (0, 8))
    self.assertBetween(flips.mean(), 0.4, 0.6)
    _, none = augment.crop_flip_params(np.random.default_rng(1), 1000, 4, flip=False)
    self.assertFalse(none.any())
    again, _ = augment.crop_flip_params(np.random.default_rng(1), 1000, 4, flip=True)
    np.testing.assert_array_equal(offsets, again)

  def test_resized_crop_boxes_lie_inside_the_image(self):
    uniforms, _ = augment.resized_crop_params(np.random.default_rng(2), 200)
    for i, (h, w) in enumerate(np.random.default_rng(3).integers(1, 400, (200, 2))):
      top, left, bh, bw = augment.resized_crop_box(uniforms[i], int(h), int(w))
      self.assertTrue(0 <= top and top + bh <= h and 0 < bh, (h, w, top, bh))
      self.assertTrue(0 <= left and left + bw <= w and 0 < bw, (h, w, left, bw))
    # Every attempt misses on a 1-pixel-high strip: central fallback clipped to the ratio.
    self.assertEqual(augment.resized_crop_box(np.ones((10, 4)), 1, 100), (0, 49, 1, 1))

  def test_random_resized_crop_shape_and_flip(self):
    image = self.images[0]
    uniforms = np.random.default_rng(4).random((augment.CROP_ATTEMPTS, 4))
    out = augment.random_resized_crop(image, uniforms, False, 16)
    self.assertEqual((out.shape, out.dtype), ((16, 16, 3), np.uint8))
    np.testing.assert_array_equal(augment.random_resized_crop(image, uniforms, True, 16),
                                  out[:, ::-1])

  def test_center_crop_is_central_and_deterministic(self):
    image = np.random.default_rng(5).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    out = augment.center_crop(image, 256, 224)
    np.testing.assert_array_equal(out, image[16:240, 48:272])
    small = augment.center_crop(self.images[0], 18, 16)
    self.assertEqual(small.shape, (16, 16, 3))
    np.testing.assert_array_equal(small, augment.center_crop(self.images[0], 18, 16))

  def test_normalize(self):
    x = augment.normalize(np.array([[0, 255, 51]], np.uint8).reshape(1, 1, 3),
                          (0.5, 0.5, 0.2), (0.5, 0.25, 0.1))
    self.assertEqual(x.dtype, np.float32)
    np.testing.assert_allclose(x.ravel(), [-1.0, 2.0, 0.0], atol=1e-6)


class DistributedTest(absltest.TestCase):

  def test_host_rows_partition_the_batch(self):
    rows = [distributed.host_rows(12, i, 3) for i in range(3)]
    self.assertEqual(rows, [(0, 4), (4, 8), (8, 12)])
    self.assertEqual(distributed.host_rows(12), (0, 12))  # One process here.
    with self.assertRaisesRegex(ValueError, "not divisible by the 5 hosts"):
      distributed.host_rows(12, 0, 5)

  def test_rows_for_sharding_and_global_batch_on_one_host(self):
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1),
                             ("run", "member", "data"))
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("run", "data"))
    self.assertEqual(distributed.rows_for_sharding(spec, (2, 8, 3)), (0, 8))
    batch = (np.ones((2, 8, 3), np.float32), np.zeros((2, 8), np.int32))
    out = distributed.global_batch(batch, spec, 8)
    self.assertEqual(out[0].shape, (2, 8, 3))
    np.testing.assert_array_equal(out[1], batch[1])

  def test_multihost_detection(self):  # More in tests/runtime/prefetch_test.py: DetectionTest.
    self.assertFalse(distributed.maybe_initialize({}))
    self.assertFalse(distributed.maybe_initialize(
        {"TPU_WORKER_HOSTNAMES": "a,b", "CHURN_JAX_DISTRIBUTED": "0"}))


if __name__ == "__main__":
  absltest.main()
