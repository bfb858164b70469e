"""Tests for churn_jax.data's batch order per run (RunBatches) and its prefetch thread."""

import threading

from absl.testing import absltest
import numpy as np

from churn_jax import data


class RunBatchesTest(absltest.TestCase):

  def make(self, n=100, batch_size=10, seeds=(0, 1, 2)):
    # y holds each example's index so batches reveal the order; x is
    # derived from it to check x and y stay aligned.
    y = np.arange(n, dtype=np.int32)
    x = np.broadcast_to(y[:, None, None], (n, 3, 2)).astype(np.float32)
    return data.RunBatches(x, y, batch_size, seeds)

  def test_shapes(self):
    batches = self.make()
    x, y = batches.batch(0)
    self.assertEqual(x.shape, (3, 10, 3, 2))
    self.assertEqual(y.shape, (3, 10))
    self.assertEqual(batches.num_runs, 3)
    self.assertEqual(batches.steps_per_epoch, 10)
    np.testing.assert_array_equal(x[:, :, 0, 0], y)

  def test_each_epoch_is_a_permutation(self):
    batches = self.make()
    for epoch in range(3):
      steps = range(epoch * 10, (epoch + 1) * 10)
      seen = np.concatenate([batches.batch(s)[1] for s in steps], axis=1)
      for run in range(3):
        np.testing.assert_array_equal(np.sort(seen[run]),
                                      np.arange(100))
        np.testing.assert_array_equal(
            seen[run],
            np.random.default_rng([run, epoch]).permutation(100))

  def test_remainder_is_dropped(self):
    batches = self.make(n=103, batch_size=10)
    self.assertEqual(batches.steps_per_epoch, 10)
    seen = np.concatenate([batches.batch(s)[1] for s in range(10)], axis=1)
    for run in range(3):
      self.assertLen(np.unique(seen[run]), 100)
    # Step 10 starts epoch 1 with a fresh permutation.
    np.testing.assert_array_equal(
        batches.batch(10)[1][0],
        np.random.default_rng([0, 1]).permutation(103)[:10])

  def test_seeds_control_order(self):
    batches = self.make(seeds=(5, 6, 5))
    _, y = batches.batch(0)
    self.assertFalse(np.array_equal(y[0], y[1]))
    np.testing.assert_array_equal(y[0], y[2])
    # Epochs differ from each other too.
    self.assertFalse(np.array_equal(
        batches.permutations(0), batches.permutations(1)))

  def test_batch_matches_iteration_and_resume(self):
    batches = self.make(n=50, batch_size=8)  # 6 steps per epoch.
    full = list(batches.iterate(0, 20))
    self.assertLen(full, 20)
    for step, (x, y) in enumerate(full):
      bx, by = batches.batch(step)
      np.testing.assert_array_equal(bx, x)
      np.testing.assert_array_equal(by, y)
    # A fresh object resuming at step 9 (mid epoch 1) continues exactly.
    resumed = list(self.make(n=50, batch_size=8).iterate(9, 11))
    for (x, y), (rx, ry) in zip(full[9:], resumed, strict=True):
      np.testing.assert_array_equal(rx, x)
      np.testing.assert_array_equal(ry, y)

  def test_invalid_arguments(self):
    with self.assertRaisesRegex(ValueError, r"batch_size must be in \[1, 10\]"):
      self.make(n=10, batch_size=11)
    with self.assertRaisesRegex(ValueError, r"batch_size must be in"):
      self.make(n=10, batch_size=0)
    with self.assertRaisesRegex(ValueError, "one entry per run"):
      self.make(seeds=())
    with self.assertRaisesRegex(ValueError, "step must be non-negative"):
      self.make().batch(-1)


class PrefetchTest(absltest.TestCase):

  def test_same_sequence_as_plain_iterator(self):
    batches = data.RunBatches(np.arange(40.0)[:, None], np.arange(40),
                              batch_size=4, seeds=[0, 1])
    plain = list(batches.iterate(3, 25))
    fetched = list(data.prefetch(batches.iterate(3, 25), size=2))
    self.assertLen(fetched, 25)
    for (x, y), (fx, fy) in zip(plain, fetched, strict=True):
      np.testing.assert_array_equal(fx, x)
      np.testing.assert_array_equal(fy, y)

  def test_exception_is_propagated(self):
    def failing():
      yield 1
      yield 2
      raise RuntimeError("disk on fire")

    received = []
    with self.assertRaisesRegex(RuntimeError, "disk on fire"):
      for item in data.prefetch(failing(), size=1):
        received.append(item)
    self.assertEqual(received, [1, 2])

  def test_early_close_stops_thread(self):
    batches = data.RunBatches(np.zeros((8, 1)), np.arange(8), 2, [0])
    stream = data.prefetch(batches.iterate(0), size=2)  # Endless.
    for _ in range(5):
      next(stream)
    stream.close()
    self.assertNotIn("prefetch",
                     [t.name for t in threading.enumerate()])

  def test_invalid_size(self):
    with self.assertRaisesRegex(ValueError, "size must be >= 1"):
      data.prefetch(iter([]), size=0)


if __name__ == "__main__":
  absltest.main()
