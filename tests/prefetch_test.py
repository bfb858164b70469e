"""distributed.prefetch_to_device: ready device batches equal to the host batches.

The sharded case needs several devices, and XLA_FLAGS must be set before jax is imported, so
it runs in a fresh subprocess of this file (`python tests/prefetch_test.py child`) with 4
fake CPU devices.
"""

import os
import sys
import threading

_CHILD = __name__ == "__main__" and sys.argv[1:] == ["child"]
if _CHILD:
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

from absl.testing import absltest
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from churn_jax import data, distributed


def _batch_sharding(num_runs: int) -> NamedSharding:
  """(R, B, ...) batches with runs over 'run' and examples over 'data', as the trainer."""
  devices = np.asarray(jax.devices())
  run = 2 if len(devices) % 2 == 0 and num_runs % 2 == 0 else 1
  mesh = Mesh(devices.reshape(run, 1, -1), ("run", "member", "data"))
  return NamedSharding(mesh, P("run", "data"))


class PrefetchToDeviceTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.batches = data.RunBatches(rng.normal(size=(64, 3)).astype(np.float32),
                                   rng.integers(0, 5, size=64).astype(np.int32),
                                   batch_size=8, seeds=[3, 4])
    self.sharding = _batch_sharding(num_runs=2)

  def check_equal_to_host(self, start, num_steps, **kwargs):
    stream = distributed.prefetch_to_device(self.batches.iterate(start, num_steps),
                                            self.sharding, 8, **kwargs)
    fetched = list(stream)
    self.assertLen(fetched, num_steps)
    for step, device_batch in enumerate(fetched, start):
      for got, want in zip(device_batch, self.batches.batch(step), strict=True):
        self.assertIsInstance(got, jax.Array)
        self.assertEqual(got.dtype, want.dtype)
        self.assertTrue(got.sharding.is_equivalent_to(self.sharding, want.ndim),
                        f"step {step}: {got.sharding} is not {self.sharding}")
        np.testing.assert_array_equal(np.asarray(got), want)
        for shard in got.addressable_shards:  # Each device holds its block of the batch.
          np.testing.assert_array_equal(np.asarray(shard.data), want[shard.index])

  def test_equal_to_host_batches_from_any_step(self):
    # Groups of 1, 8, 8 and 8 steps, then the last 4 one by one, across epochs of 8 steps.
    self.check_equal_to_host(start=5, num_steps=29, group_steps=8)

  def test_equal_with_one_step_per_transfer(self):
    self.check_equal_to_host(start=0, num_steps=5, group_steps=1)
    self.check_equal_to_host(start=2, num_steps=5, group_bytes=1)

  def test_exception_is_raised_after_the_batches_before_it(self):
    def failing():
      yield from self.batches.iterate(0, 6)
      raise RuntimeError("disk on fire")

    received = []
    with self.assertRaisesRegex(RuntimeError, "disk on fire"):
      for batch in distributed.prefetch_to_device(failing(), self.sharding, 8, size=1,
                                                  group_steps=4):
        received.append(batch)
    self.assertLen(received, 6)  # Groups of 1, 4 and the 1 batch before the error.
    np.testing.assert_array_equal(np.asarray(received[5][0]), self.batches.batch(5)[0])

  def test_close_stops_the_thread(self):
    stream = distributed.prefetch_to_device(self.batches.iterate(0), self.sharding, 8,
                                            group_steps=4)  # Endless.
    for _ in range(7):
      next(stream)
    stream.close()
    self.assertNotIn("prefetch", [t.name for t in threading.enumerate()])
    with self.assertRaises(StopIteration):
      next(stream)



class SubprocessTest(absltest.TestCase):

  def test_sharded_over_4_devices(self):
    from tests import testing
    proc = testing.run_child(__file__)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("OK", proc.stderr)


class ChildTest(absltest.TestCase):
  """Runs in the child process only: the checks above on a (run 2, data 2) mesh."""

  def test_mesh_is_sharded(self):
    self.assertEqual(jax.device_count(), 4)
    self.assertEqual(dict(_batch_sharding(2).mesh.shape), {"run": 2, "member": 1, "data": 2})


# The parent collects the subprocess test; the child reruns PrefetchTest on 4 devices.
if _CHILD:
  del SubprocessTest
else:
  del ChildTest

if __name__ == "__main__":
  absltest.main(argv=sys.argv[:1])
