"""distributed.prefetch_to_device: ready device batches equal to the host batches.

The sharded case needs several devices, which must be requested before JAX starts, so it
(ChildTest) runs in the shared child process, tests/device_child.py, on 4 of its fake CPU
devices.
"""

import os
import threading

from absl.testing import absltest
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from churn_jax import data
from churn_jax.runtime import distributed
from tests import device_child


def _batch_sharding(num_runs: int) -> NamedSharding:
  """(R, B, ...) batches with runs over 'run' and examples over 'data', as the trainer."""
  devices = np.asarray(jax.devices()[:4])  # The device child has 8.
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



class _Layout:
  """A stand-in sharding: the blocks one process's devices hold, written by hand."""

  def __init__(self, *blocks):
    self.blocks = blocks

  def addressable_devices_indices_map(self, shape):
    del shape
    return {i: tuple(slice(*r) for r in block) for i, block in enumerate(self.blocks)}


class HostBlockTest(absltest.TestCase):
  """Which block of an (R, B) or (R, M, B) batch a process feeds, for hand-made layouts."""

  def test_block_of_each_layout(self):
    # Process 0 of 2, 4 devices each, R=2 runs of B=8 rows.
    runs_across = _Layout(*[((0, 1), (2 * i, 2 * i + 2)) for i in range(4)])  # mesh (2, 1, 4)
    members_across = _Layout(*[((0, 2), (2 * i, 2 * i + 2)) for i in range(4)])  # (1, 2, 4)
    data_across = _Layout(*[((0, 2), (i, i + 1)) for i in range(4)])  # (1, 1, 8)
    self.assertEqual(distributed.host_block(runs_across, (2, 8)), ((0, 1), (0, 8)))
    self.assertEqual(distributed.host_block(members_across, (2, 8)), ((0, 2), (0, 8)))
    self.assertEqual(distributed.host_block(data_across, (2, 8)), ((0, 2), (0, 4)))
    per_member = _Layout(((1, 2), (0, 1), (4, 8)), ((1, 2), (1, 2), (4, 8)))  # (R, M, B)
    self.assertEqual(distributed.host_block(per_member, (2, 2, 8)), ((1, 2), (0, 2), (4, 8)))

  def test_a_layout_that_is_not_one_block_is_refused(self):
    corners = _Layout(((0, 1), (0, 4)), ((1, 2), (4, 8)))
    with self.assertRaisesRegex(ValueError, "not one block"):
      distributed.host_block(corners, (2, 8))

  def test_host_batches_are_the_block_of_the_global_batch(self):
    rng = np.random.default_rng(1)
    ds = data.Dataset("d", rng.normal(size=(40, 3)).astype(np.float32),
                      rng.integers(0, 3, 40).astype(np.int32), np.zeros((4, 3), np.float32),
                      np.zeros(4, np.int32), 3)
    seeds = [5, 6, 7]
    whole = list(ds.train_batches(8, seeds, 3, 4))
    layout = _Layout(((1, 3), (4, 6)), ((1, 3), (6, 8)))  # Runs 1-2, rows 4-8.
    part = list(distributed.host_batches(ds, 8, seeds, 3, 4, layout))
    self.assertLen(part, 4)
    for (xw, yw), (xp, yp) in zip(whole, part):
      np.testing.assert_array_equal(xp, xw[1:3, 4:8])
      np.testing.assert_array_equal(yp, yw[1:3, 4:8])
    # A member axis between runs and rows is cut after the source made it.
    members = _Layout(((0, 3), (1, 2), (0, 8)))
    source = _MemberSource(ds, num_members=2)
    part = list(distributed.host_batches(source, 8, seeds, 0, 2, members, (3, 2, 8)))
    np.testing.assert_array_equal(part[1][0], next(iter(
        source.train_batches(8, seeds, 1, 1)))[0][:, 1:2])


class _MemberSource:
  """(R, M, B, ...) batches: member m of run r sees the data order of seed r * 10 + m."""

  def __init__(self, ds, num_members):
    self.ds, self.num_members = ds, num_members

  def train_batches(self, batch_size, seeds, start_step, num_steps):
    per_member = [self.ds.train_batches(batch_size, [s * 10 + m for s in seeds], start_step,
                                        num_steps) for m in range(self.num_members)]
    for parts in zip(*per_member):
      yield tuple(np.stack([p[i] for p in parts], axis=1) for i in range(2))


class DetectionTest(absltest.TestCase):

  def test_initialises_only_where_asked_or_detected(self):
    self.assertIsNone(distributed.detected_cluster())  # No cluster on this machine.
    self.assertFalse(distributed.maybe_initialize({}))
    self.assertFalse(distributed.maybe_initialize({"CHURN_JAX_DISTRIBUTED": "0",
                                                   "CHURN_JAX_COORDINATOR": "127.0.0.1:1"}))
    slurm = dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="n[1-2]", SLURM_NTASKS="2",
                 SLURM_PROCID="0", SLURM_LOCALID="0")
    with absltest.mock.patch.dict(os.environ, slurm):
      self.assertEqual(distributed.detected_cluster(), "SlurmCluster")


class SubprocessTest(absltest.TestCase):

  @device_child.parent
  def test_sharded_over_4_devices(self):
    device_child.assert_passed(self, __file__)


class ChildTest(PrefetchToDeviceTest):
  """Runs in the shared child process only: PrefetchToDeviceTest's checks (inherited) on a
  (run 2, data 2) mesh."""

  def test_mesh_is_sharded(self):
    self.assertGreaterEqual(jax.device_count(), 4)
    self.assertEqual(dict(self.sharding.mesh.shape), {"run": 2, "member": 1, "data": 2})


CHILD_TESTS = absltest.TestLoader().getTestCaseNames(ChildTest)
if not device_child.RUNNING:
  del ChildTest  # Collected only in tests/device_child.py, which has the devices it needs.

if __name__ == "__main__":
  absltest.main()
