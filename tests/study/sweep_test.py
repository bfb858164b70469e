"""Sweeps inside the stack: every point equals the same point run alone, churn stays per point.

The two-device check runs in a fresh subprocess of this file (`python tests/study/sweep_test.py
child`): the fake device count must be set before jax is imported.
"""

import os
import sys
import tempfile

_CHILD = __name__ == "__main__" and sys.argv[1:] == ["child"]
if _CHILD:
  # -O0: XLA:CPU backend optimisations off for the programs without their own options (the
  # checkpoint checksum, metrics; the step keeps engine/step.py's -O1): the child took 12.3
  # and 13.7 CPU-s against 13.9 and 15.6 without. Both sides of its comparison run here.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +  # The run's (conftest.py).
                             " --xla_force_host_platform_device_count=2"
                             " --xla_backend_optimization_level=0").strip()

from absl.testing import absltest
import chex
import jax
import numpy as np

from churn_jax import methods
from churn_jax.cli import command as cli
from churn_jax.configs import config_lib
from churn_jax.data import dataset as dataset_lib
from churn_jax.outputs import predictions
from churn_jax.protocol import tables
from churn_jax.study import sweeps, train
from tests import testing


class PointsEqualRunsAloneTest(absltest.TestCase):

  def test_stacked_points_are_bitwise_the_points_trained_alone(self):
    config = testing.tiny_config(num_runs=2, num_steps=6)
    ds = testing.tiny_dataset()
    sweep = sweeps.Sweep("codistill", "beta.value", (0.5, 0.3))
    method = sweeps.stacked_method(sweep, config.method_configs.codistill, 6)
    stacked = train.train_method(config, ds, method, run_ids=[0, 1, 0, 1],
                                 coefficients=np.repeat(np.float32(sweep.values), 2))
    # The second point alone: a plain study whose config holds beta = 0.3 as a number.
    point = sweeps.point_config(config.method_configs.codistill, "beta.value", 0.3)
    self.assertEqual(point.beta.value, 0.3)
    alone = train.train_method(config, ds, methods.build("codistill", point, 6))
    chex.assert_trees_all_equal(jax.tree_util.tree_map(lambda a: a[2:], stacked.state.params),
                                alone.state.params)
    np.testing.assert_array_equal(stacked.member_probs[2:], alone.member_probs)
    # Same runs (keys and data), other coefficient: the points really differ.
    self.assertGreater(np.abs(stacked.member_probs[:2] - alone.member_probs).max(), 1e-6)


class StudyTest(absltest.TestCase):

  def test_study_entries_equal_plain_studies_of_each_point(self):
    config = testing.tiny_config(num_runs=3, num_steps=4, methods="baseline")
    sweep = sweeps.Sweep("entropy", "beta", (0.1, 0.3))
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
      results = sweeps.train_study(config, d1, [sweep], plain=["baseline"])
      self.assertEqual(list(results["methods"]), ["baseline", "entropy@beta=0.1",
                                                  "entropy@beta=0.3"])
      point = config.copy_and_resolve_references()
      point.method_configs.entropy.beta = 0.3
      point.methods = "entropy"
      plain = train.train_and_evaluate(point, d2)["methods"]["entropy"]
      # The point's predictions file holds that point's runs: the plain study's, bitwise.
      entry = results["methods"]["entropy@beta=0.3"]
      saved = predictions.load(os.path.join(d1, entry["predictions"]["path"]))
      alone = predictions.load(os.path.join(d2, plain["predictions"]["path"]))
      np.testing.assert_array_equal(saved["deployed"], alone["deployed"])
      # `churn-jax report` rewrites the protocol from the predictions, keeping the header.
      tables.write_protocol(d1, results, "# Protocol\n\nCommand: `x`, 1 s.\n")
      with open(os.path.join(d1, "protocol.md")) as f:
        written = f.read()
      os.remove(os.path.join(d1, "protocol_table2_test.csv"))
      self.assertEqual(cli.main(["report", d1]), 0)
      with open(os.path.join(d1, "protocol.md")) as f:
        self.assertEqual(f.read(), written)
      self.assertTrue(os.path.exists(os.path.join(d1, "protocol_table2_test.csv")))
    # Churn compares the 3 runs of one point only: 3 pairs, not the 15 of all 6 runs.
    self.assertLen(entry["churn"]["values"], 3)
    for key in ("accuracy", "churn", "entropy", "nll"):
      self.assertEqual(entry[key], plain[key], key)
    self.assertEqual(entry["sweep"], {"method": "entropy", "key": "beta", "value": 0.3})
    self.assertNotEqual(results["methods"]["entropy@beta=0.1"]["entropy"], entry["entropy"])

  def test_validation_split_is_held_out_and_reported(self):
    ds = testing.tiny_dataset(num_train=40)
    train_ds, val = dataset_lib.split_validation(ds, 0.25, seed=0)
    self.assertEqual((train_ds.num_train, val.num_test), (30, 10))
    rows = {tuple(r) for r in train_ds.x_train}
    self.assertFalse(any(tuple(r) in rows for r in val.x_test))  # Disjoint...
    self.assertEqual(len(rows) + val.num_test, 40)               # ... and complete.
    np.testing.assert_array_equal(val.x_train, train_ds.x_train)
    config = testing.tiny_config(num_runs=2, num_steps=2, methods="baseline")
    with tempfile.TemporaryDirectory() as d:
      results = sweeps.train_study(config, d, [], plain=["baseline"], validation_fraction=0.2)
    entry = results["methods"]["baseline"]
    self.assertEqual(entry["validation"]["num_runs"], 2)
    self.assertEqual(results["config"]["validation_fraction"], 0.2)


class SpecTest(absltest.TestCase):

  def test_parse_and_group(self):
    self.assertEqual(sweeps.parse_sweeps("codistill:beta.value=0.5,1;skl:beta=0.01"),
                     [sweeps.Sweep("codistill", "beta.value", (0.5, 1.0)),
                      sweeps.Sweep("skl", "beta", (0.01,))])
    with self.assertRaisesRegex(ValueError, "bad sweep"):
      sweeps.parse_sweeps("codistill:beta.value=")
    plain, grouped = sweeps.from_overrides([
        {"methods": "baseline"}, {"methods": "skl", "method_configs.skl.beta": 0.1},
        {"methods": "skl", "method_configs.skl.beta": 0.2}])
    self.assertEqual(plain, ["baseline"])
    self.assertEqual(grouped, [sweeps.Sweep("skl", "beta", (0.1, 0.2))])
    self.assertEqual(grouped[0].points, ["skl@beta=0.1", "skl@beta=0.2"])
    with self.assertRaisesRegex(ValueError, "one method with one coefficient"):
      sweeps.from_overrides([{"methods": "skl", "method_configs.entropy.beta": 0.1}])

  def test_unknown_key_and_python_number_coefficients_fail_in_one_line(self):
    config = testing.tiny_config()
    with self.assertRaisesRegex(ValueError, "not a coefficient"):
      sweeps.expand_config(config, [sweeps.Sweep("skl", "betta", (0.1,))])
    # Distillation's temperature is a Python float in its loss (float(cfg.temperature)).
    kd = config_lib.all_method_configs(0.1, 0.01, 1.0).self_distill
    with self.assertRaisesRegex(ValueError, "needs a Python number"):
      sweeps.check_traceable(sweeps.Sweep("self_distill", "temperature", (1.0, 2.0)), kd, 10)
    cfg = config.method_configs.codistill.copy_and_resolve_references()
    sweeps.check_traceable(sweeps.Sweep("codistill", "beta.value", (0.1, 0.2)), cfg, 10)


class TwoDevicesTest(absltest.TestCase):

  def test_points_equal_points_alone_on_two_devices(self):
    testing.assert_child_passes(self, __file__)


class ChildTest(absltest.TestCase):
  """Runs in the child process only, where 2 fake devices exist."""

  def test_study_on_two_devices(self):
    self.assertLen(jax.devices(), 2)
    # 3 runs on 2 devices: a study alone splits the batch (data axis 2); the stack of 6 runs
    # must do the same rather than split its runs, or the gradient sums differ.
    config = testing.tiny_config(num_runs=3, num_steps=3, methods="codistill")
    config.cpu_devices = 2
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
      results = sweeps.train_study(config, d1, [sweeps.Sweep("codistill", "beta.value",
                                                             (0.5, 0.3))])
      point = config.copy_and_resolve_references()
      point.method_configs.codistill.beta.value = 0.3
      alone = train.train_and_evaluate(point, d2)["methods"]["codistill"]
    for key in ("accuracy", "churn", "nll"):
      self.assertEqual(results["methods"]["codistill@beta=0.3"][key], alone[key], key)


if not _CHILD:
  del ChildTest  # Collected only in the child, which has the 2 devices it needs.

if __name__ == "__main__":
  if _CHILD:
    sys.argv = sys.argv[:1] + ["ChildTest"]
  absltest.main()
