"""--deterministic_ops on the launcher (churn_jax/cli/app.py) sets XLA_FLAGS before main runs."""

import os
import tempfile
from unittest import mock

from absl.testing import absltest

from churn_jax.cli import app


class DeterministicOpsFlagTest(absltest.TestCase):

  def _flags_seen_by_main(self, extra):
    seen = {}

    def fake_main(config, workdir):
      seen["xla_flags"] = os.environ.get("XLA_FLAGS", "")
      return 0

    with mock.patch.object(app, "main", fake_main), tempfile.TemporaryDirectory() as tmp, \
        mock.patch.dict(os.environ, {"XLA_FLAGS": "--xla_cpu_use_xnnpack=true"}):
      with self.assertRaises(SystemExit) as done:
        app.run(["main.py", "--config=experiments/digits.py:quick",
                 f"--workdir={tmp}/w"] + extra)
    self.assertEqual(done.exception.code, 0)
    return seen["xla_flags"]

  def test_flag_adds_the_gpu_determinism_flag_and_keeps_others(self):
    self.assertEqual(self._flags_seen_by_main(["--deterministic_ops"]),
                     "--xla_cpu_use_xnnpack=true --xla_gpu_deterministic_ops=true")
    self.assertEqual(self._flags_seen_by_main(["--nodeterministic_ops"]),
                     "--xla_cpu_use_xnnpack=true")


if __name__ == "__main__":
  absltest.main()
