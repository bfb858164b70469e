"""Table 1: on CPU, runs that differ in nothing are identical; differing in init is churn."""

import os
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax.study import table1
from tests import testing


class Table1Test(absltest.TestCase):

  def test_nothing_row_is_exactly_zero_and_init_row_is_not(self):
    config = testing.tiny_config(num_runs=3, num_steps=4, methods="baseline")
    with tempfile.TemporaryDirectory() as d:
      rows = table1.run_table1(config, d, sources=table1.SOURCES[:2])
      self.assertTrue(os.path.exists(os.path.join(d, "nothing", "results.json")))
    nothing, init = rows
    self.assertEqual((nothing["source"], nothing["vary"]), ("nothing", ""))
    self.assertEqual(nothing["churn"]["values"], [0.0, 0.0, 0.0])  # Bitwise identical runs.
    self.assertEqual(nothing["schurn"]["values"], [0.0, 0.0, 0.0])
    self.assertGreater(init["churn"]["mean"], 0.0)
    self.assertGreater(init["schurn"]["mean"], 0.0)
    md = table1.markdown(rows)
    self.assertIn("| nothing | `` | 3 |", md)
    self.assertIn("| 0.00 ± 0.00 | 0.000 ± 0.000 |", md.splitlines()[2])
    lines = table1.csv_text(rows).splitlines()
    self.assertEqual(lines[1].split(",")[:3], ["nothing", '""', "3"])
    np.testing.assert_equal(float(lines[1].split(",")[5]), 0.0)

  def test_deterministic_flag(self):
    self.assertEqual(table1.deterministic_xla_flags(""), "--xla_gpu_deterministic_ops=true")
    flags = table1.deterministic_xla_flags("--xla_force_host_platform_device_count=2")
    self.assertEqual(flags, "--xla_force_host_platform_device_count=2 "
                            "--xla_gpu_deterministic_ops=true")
    self.assertEqual(table1.deterministic_xla_flags(flags), flags)


if __name__ == "__main__":
  absltest.main()
