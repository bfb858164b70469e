"""config.mesh (engine/sharding.py parse_mesh / resolve_mesh_shape / make_mesh) and evaluation
sharded over 'data'; the multi-device half (ChildTest) runs on 8 fake CPU devices in the
shared child process, tests/device_child.py."""

from absl.testing import absltest
import jax
import numpy as np

from churn_jax import methods
from churn_jax.engine import sharding, step as step_lib
from churn_jax.study import train, validate
from tests import device_child


class ParseMeshTest(absltest.TestCase):

  def test_specs(self):
    self.assertIsNone(sharding.parse_mesh(""))
    self.assertIsNone(sharding.parse_mesh("auto"))
    self.assertEqual(sharding.parse_mesh("run=2, data=-1"), {"run": 2, "data": -1})
    self.assertEqual(sharding.resolve_mesh_shape({"run": 2, "data": -1}, 8, 4, 2, 16),
                     (2, 1, 4))
    self.assertEqual(sharding.resolve_mesh_shape({"member": 2, "data": 4}, 8, 4, 2, 16),
                     (1, 2, 4))

  def test_bad_specs_are_one_line_errors(self):
    for spec, words in (("run=2,chips=4", "unknown axis"), ("run=two", "integer"),
                        ("run=-1,data=-1", "at most one"), ("run", "run=R"),
                        ("data=0", ">= 1")):
      with self.assertRaisesRegex(ValueError, words):
        sharding.parse_mesh(spec)
    for spec, args, words in (({"run": 3}, (8, 4, 2, 16), "3 devices"),
                              ({"run": 8}, (8, 4, 2, 16), "run axis"),
                              ({"data": 8}, (8, 4, 2, 12), "data axis")):
      with self.assertRaisesRegex(ValueError, words):
        sharding.resolve_mesh_shape(spec, *args)
    with self.assertRaisesRegex(ValueError, "loop strategy"):
      sharding.resolve_mesh_shape({"run": 2, "data": -1}, 8, 4, 2, 16, "loop")

  def test_validate_names_the_mesh(self):
    from tests import testing
    config = testing.tiny_config(num_runs=2)
    config.mesh = "run=3"
    with self.assertRaisesRegex(ValueError, "invalid config: mesh"):
      validate.validate_config(config)

  @device_child.parent
  def test_on_8_devices(self):
    device_child.assert_passed(self, __file__)


class AutoDevicesForStacksTest(absltest.TestCase):

  def test_big_stacks_keep_one_cpu_device(self):
    from churn_jax.runtime import host_devices
    from churn_jax.study import settings
    from tests import testing
    self.assertEqual(host_devices.auto_count("lenet5", 128, cores=2, stack_size=2), 2)
    self.assertEqual(host_devices.auto_count("lenet5", 128, cores=2, stack_size=4), 1)
    config = testing.tiny_config(num_runs=5, model=dict(name="lenet5"))
    config.cpu_devices = 0
    self.assertEqual(settings.cpu_device_count(config), 1)  # 5 runs: one device.
    config.num_runs = 2
    self.assertEqual(settings.cpu_device_count(config),
                     host_devices.auto_count("lenet5", 8, stack_size=1))


class ChildTest(absltest.TestCase):
  """Runs in the child process only, where 8 fake devices exist."""

  def setUp(self):
    super().setUp()
    self.enterContext(device_child.fast_compile())  # Both sides of each comparison at -O0.

  def test_config_mesh_and_sharded_evaluation(self):
    from tests import testing
    self.assertEqual(jax.device_count(), 8)
    config = testing.tiny_config(num_runs=2, num_steps=3, batch_size=8)
    config.strategy = "vmap"
    config.eval_batch_size = 16
    config.mesh = "run=2,data=-1"
    ds = testing.tiny_dataset()
    method = methods.build("codistill", config.method_configs["codistill"], 3)
    out = train.train_method(config, ds, method)
    mesh = out.state.step.sharding.mesh
    self.assertEqual(dict(mesh.shape), {"run": 2, "member": 1, "data": 4})
    # Evaluation: each 'data' device gets a quarter of the batch, and the probabilities
    # come back split the same way (no device evaluates everything).
    x = np.asarray(next(iter(ds.test_batches(16)))[0])
    xs = jax.make_array_from_callback(x.shape, sharding.eval_sharding(mesh, 16),
                                      lambda i: x[i])
    self.assertEqual(xs.sharding.shard_shape(xs.shape)[0], 4)
    probs = step_lib.make_predict(train.models.get_model("mlp", ds.num_classes, hidden=(16,)),
                                  "vmap")(out.state, xs)
    self.assertEqual(probs.sharding.shard_shape(probs.shape)[2], 4)
    # The same numbers as one device computes.
    single = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), sharding.AXES)
    plain = train.train_method(config, ds, method, mesh=single)
    np.testing.assert_allclose(out.member_probs, plain.member_probs, rtol=1e-4, atol=1e-5)
    # A batch the data axis does not divide is replicated, not refused.
    self.assertEqual(sharding.eval_sharding(mesh, 6).spec, jax.sharding.PartitionSpec())


CHILD_TESTS = absltest.TestLoader().getTestCaseNames(ChildTest)
if not device_child.RUNNING:
  del ChildTest  # Collected only in tests/device_child.py, which has the devices it needs.

if __name__ == "__main__":
  absltest.main()
