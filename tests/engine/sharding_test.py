"""A sharded stacked step on 8 fake CPU devices equals the unsharded step.

The fake devices (host_devices.configure, as the trainer asks for them) must be requested
before JAX initialises its backends, and pytest has run JAX for other tests first, so the
checks (ChildTest) run in the shared 8-device child process, tests/device_child.py.
"""

from absl.testing import absltest
import chex
import jax
import numpy as np

from churn_jax import methods
from churn_jax.engine import sharding
from churn_jax.runtime import host_devices
from churn_jax.study import train
from tests import device_child


class MeshShapeTest(absltest.TestCase):

  def test_mesh_shape_prefers_runs_then_members(self):
    self.assertEqual(sharding.mesh_shape(8, 4, 2, 16), (4, 2, 1))
    self.assertEqual(sharding.mesh_shape(8, 2, 2, 16), (2, 2, 2))
    self.assertEqual(sharding.mesh_shape(8, 5, 1, 16), (1, 1, 8))
    self.assertEqual(sharding.mesh_shape(1, 5, 2, 3), (1, 1, 1))
    with self.assertRaisesRegex(ValueError, "batch_size 12 is not divisible by the data axis"):
      sharding.mesh_shape(8, 5, 1, 12)

  def test_loop_strategy_splits_only_the_batch(self):
    self.assertEqual(sharding.mesh_shape(8, 4, 2, 16, "loop"), (1, 1, 8))
    self.assertEqual(sharding.mesh_shape(2, 5, 1, 100, "loop"), (1, 1, 2))
    with self.assertRaisesRegex(ValueError, "not divisible by the data axis"):
      sharding.mesh_shape(2, 2, 1, 5, "loop")


class HostDevicesTest(absltest.TestCase):

  def test_auto_count_one_per_core_where_measured_faster(self):
    self.assertEqual(host_devices.auto_count("lenet5", 128, cores=2), 2)
    self.assertEqual(host_devices.auto_count("lenet5", 100, cores=3), 2)  # Divides the batch.
    self.assertEqual(host_devices.auto_count("resnet20", 128, cores=2), 1)
    self.assertEqual(host_devices.auto_count("mlp", 128, cores=2), 1)
    self.assertEqual(host_devices.auto_count("conv1d", 128, cores=8), 1)

  def test_requested_count(self):
    from churn_jax.study import settings  # The config -> host_devices wiring.
    from tests import testing
    config = testing.tiny_config()
    config.cpu_devices = 3
    self.assertEqual(settings.cpu_device_count(config), 3)
    config.cpu_devices = 0
    self.assertEqual(settings.cpu_device_count(config), 1)  # An MLP.
    config.cpu_devices = -1
    with self.assertRaisesRegex(ValueError, "cpu_devices must be >= 0"):
      settings.cpu_device_count(config)

  @device_child.parent
  def test_sharded_equals_unsharded_on_8_devices(self):
    device_child.assert_passed(self, __file__)


class ChildTest(absltest.TestCase):
  """Runs in the child process only, where 8 fake devices exist."""

  def setUp(self):
    super().setUp()
    self.enterContext(device_child.fast_compile())  # Both sides of each comparison at -O0.

  def test_configure_sets_the_count_then_keeps_it(self):
    # The child asked host_devices.configure(8) before any JAX computation, XLA_FLAGS unset.
    self.assertEqual((device_child.CONFIGURED, jax.device_count()), (8, 8))
    # Asking again after initialisation keeps the 8 and says so.
    self.assertEqual(host_devices.configure(2), 8)

  def test_sharded_step(self):
    self.assertEqual(jax.device_count(), 8)
    from tests import testing
    config = testing.tiny_config(num_runs=4, num_steps=4, batch_size=8)
    config.strategy = "vmap"
    ds = testing.tiny_dataset()
    method = methods.build("codistill", config.method_configs["codistill"], 4)
    # The unsharded reference, trained once for both layouts.
    single = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), sharding.AXES)
    plain = train.train_method(config, ds, method, mesh=single)
    for shape in [(4, 2, 1), (1, 2, 4)]:  # (run, member) and (member, data) sharded.
      mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(shape), sharding.AXES)
      sharded = train.train_method(config, ds, method, mesh=mesh)
      leaf = jax.tree_util.tree_leaves(sharded.state.params)[0]
      # Each device holds its block of runs and members.
      self.assertEqual(leaf.sharding.shard_shape(leaf.shape)[:2], (4 // shape[0], 2 // shape[1]))
      chex.assert_trees_all_equal_shapes(sharded.state.params, plain.state.params)
      chex.assert_trees_all_close(sharded.state.params, plain.state.params, rtol=1e-4, atol=1e-5)
      chex.assert_trees_all_close(sharded.member_probs, plain.member_probs, rtol=1e-4, atol=1e-5)

  def test_loop_strategy_data_parallel_with_batch_norm(self):
    # The CPU layout for conv nets: loop strategy, batch split over devices. BatchNorm
    # statistics must still be those of the whole batch.
    from tests import testing
    config = testing.tiny_config(num_runs=2, num_steps=4, batch_size=8,
                                 model=dict(name="resnet_cifar", depth=8))
    config.strategy = "loop"
    ds = testing.tiny_dataset(image=True)
    # One member per run: each ResNet copy in the unrolled loop costs seconds of compile, and
    # the batch split is the same for every (run, member).
    method = methods.build("baseline", config.method_configs["baseline"], 4)
    mesh = sharding.make_mesh(2, 1, 8, strategy="loop")
    self.assertEqual(dict(mesh.shape), {"run": 1, "member": 1, "data": 8})
    sharded = train.train_method(config, ds, method, mesh=mesh)
    single = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), sharding.AXES)
    plain = train.train_method(config, ds, method, mesh=single)
    chex.assert_trees_all_close((sharded.state.params, sharded.state.batch_stats),
                                (plain.state.params, plain.state.batch_stats),
                                rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(sharded.member_probs, plain.member_probs, rtol=1e-4, atol=1e-5)


CHILD_TESTS = absltest.TestLoader().getTestCaseNames(ChildTest)
if not device_child.RUNNING:
  del ChildTest  # Collected only in tests/device_child.py, which has the devices it needs.

if __name__ == "__main__":
  absltest.main()
