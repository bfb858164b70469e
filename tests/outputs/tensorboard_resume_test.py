"""TensorBoard after interruptions: every logged step once, with the values of the process
that finished, after a kill -9 (buffered events lost, last record torn) and after a
checkpoint fallback (a resume from an older step than the last one logged)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import types

from absl.testing import absltest
import numpy as np

from churn_jax.outputs import observer as observer_lib, tensorboard
from churn_jax.study import settings
from tests import testing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CHILD = """
import os, signal, sys, types
import numpy as np
from churn_jax.outputs import observer
from churn_jax.study import settings
from tests import testing
workdir, last, offset = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
method = types.SimpleNamespace(name="baseline")
obs = settings.method_observer(workdir, testing.tiny_config(num_runs=2), method)
for step in range(50, last + 1, 50):
  obs.on_log(step, {"loss": np.array([step, -step]) + offset})
os.kill(os.getpid(), signal.SIGKILL)  # Nothing flushed, no exit handlers.
"""


def _loss(step, offset):
  return [step + offset, -step + offset]


class TensorBoardResumeTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = tempfile.mkdtemp()
    self.method = types.SimpleNamespace(name="baseline")
    self.config = testing.tiny_config(num_runs=2)

  def tearDown(self):
    shutil.rmtree(self.workdir, ignore_errors=True)
    super().tearDown()

  def _log(self, first, last, offset):
    obs = settings.method_observer(self.workdir, self.config, self.method)
    for step in range(first, last + 1, 50):
      obs.on_log(step, {"loss": np.array(_loss(0, offset)) + [step, -step]})
    return obs

  def _scalars(self, run):
    return tensorboard.read_scalars(
        os.path.join(self.workdir, tensorboard.DIRNAME, "baseline", f"run{run}"))

  def _assert_steps(self, expected):
    """expected: step -> offset of the process whose value must be there."""
    for run in (0, 1):
      loss = self._scalars(run)["train/loss"]
      self.assertEqual([s for s, _ in loss], sorted(expected))  # Each step once, in order.
      for step, value in loss:
        self.assertAlmostEqual(value, _loss(step, expected[step])[run], places=4)
      lr = self._scalars(run)["train/learning_rate"]
      self.assertEqual([s for s, _ in lr], sorted(expected))

  def test_kill_9_then_resume(self):
    child = subprocess.run([sys.executable, "-c", _CHILD, self.workdir, "600", "0.25"],
                           cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                           capture_output=True, text=True, timeout=300)
    self.assertEqual(child.returncode, -signal.SIGKILL, child.stderr[-2000:])
    # The last checkpoint was at step 400: the resumed process logs 450..800.
    self._log(450, 800, 0.5).close()
    self._assert_steps({s: 0.25 if s <= 400 else 0.5 for s in range(50, 801, 50)})

  def test_checkpoint_fallback(self):
    self._log(50, 300, 0.25).close()  # Logged up to 300, then stopped.
    # Its step-300 checkpoint was rejected: resumed from 150, steps 200..400 logged again.
    self._log(200, 400, 0.5).close()
    self._assert_steps({s: 0.25 if s <= 150 else 0.5 for s in range(50, 401, 50)})


if __name__ == "__main__":
  absltest.main()
