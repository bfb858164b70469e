"""Preemption: a SIGKILLed study resumes to bitwise the same results; the NaN guard; reuse."""

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import jax
import numpy as np

from churn_jax import methods
from churn_jax.runtime import checkpoint
from churn_jax.study import train
from tests import testing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = ["--config=experiments/mnist1d.py:quick", "--config.methods=baseline,codistill",
         "--config.num_train_steps=400", "--config.checkpoint_every_steps=40",
         "--config.progress=False"]


def cli(workdir, cache, *extra):
  """Starts the CLI; its output goes to a file (a pipe nobody reads would block it)."""
  env = dict(os.environ, PYTHONPATH=ROOT, CHURN_JAX_CACHE=cache)
  log = tempfile.NamedTemporaryFile("w+", dir=cache, suffix=".log", delete=False)
  proc = subprocess.Popen([sys.executable, "launch/main.py", f"--workdir={workdir}", *FLAGS,
                           *extra], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                          text=True)
  proc.log_path = log.name
  return proc


finish = testing.finish


def read(path):
  with open(path, "rb") as f:
    return f.read()


class KillResumeTest(absltest.TestCase):

  def test_sigkill_then_rerun_matches_uninterrupted_run_bitwise(self):
    with tempfile.TemporaryDirectory() as tmp:
      full = cli(f"{tmp}/full", tmp)
      out = finish(full)
      self.assertEqual(full.returncode, 0, out[-2000:])

      killed = cli(f"{tmp}/killed", tmp)
      # Kill in the middle of the second method, once it has a checkpoint to resume from.
      deadline = time.time() + 300
      while not glob.glob(f"{tmp}/killed/checkpoints/codistill-*/1[26]0"):
        self.assertIsNone(killed.poll(), "the study finished before it could be killed")
        self.assertLess(time.time(), deadline)
        time.sleep(0.05)
      killed.send_signal(signal.SIGKILL)
      finish(killed)
      with open(f"{tmp}/killed/results.json") as f:
        self.assertEqual(list(json.load(f)["methods"]), ["baseline"])  # Finished before kill.
      timings_before = json.loads(read(f"{tmp}/killed/timings.json"))

      resumed = cli(f"{tmp}/killed", tmp)
      out = finish(resumed)
      self.assertEqual(resumed.returncode, 0, out[-2000:])
      self.assertIn("resumed from step", out)
      self.assertIn("baseline: finished earlier, results reused", out)
      for name in ("results.json", "results.csv", "results.md"):
        self.assertEqual(read(f"{tmp}/full/{name}"), read(f"{tmp}/killed/{name}"), name)
      # The baseline was not trained again.
      timings_after = json.loads(read(f"{tmp}/killed/timings.json"))
      self.assertEqual(timings_before["baseline"], timings_after["baseline"])


class InProcessTest(absltest.TestCase):

  def test_same_config_twice_gives_identical_results_json(self):
    config = testing.tiny_config(num_runs=2, num_steps=6, methods="codistill")
    with tempfile.TemporaryDirectory() as tmp:
      config.data.cache_dir = tmp
      train.train_and_evaluate(config, f"{tmp}/a")
      train.train_and_evaluate(config, f"{tmp}/b")
      self.assertEqual(read(f"{tmp}/a/results.json"), read(f"{tmp}/b/results.json"))

  def test_corrupt_latest_checkpoint_falls_back_to_previous(self):
    config = testing.tiny_config(num_runs=2, num_steps=6)
    config.checkpoint_every_steps = 2
    ds = testing.tiny_dataset()
    method = methods.build("baseline", config.method_configs["baseline"], 6)
    with tempfile.TemporaryDirectory() as tmp:
      ckpt = checkpoint.MethodCheckpointer(tmp, 2, max_to_keep=2)
      full = train.train_method(config, ds, method, checkpointer=ckpt)
      self.assertEqual(sorted(os.listdir(tmp)), ["4", "6"])
      for path in glob.glob(f"{tmp}/6/**/*", recursive=True):  # Truncate every file.
        if os.path.isfile(path):
          open(path, "wb").close()
      state, step = ckpt.restore_latest(full.state)
      self.assertEqual(step, 4)
      self.assertEqual(int(state.step), 4)
      # Training on from step 4 reproduces the uninterrupted result exactly.
      again = train.train_method(config, ds, method, checkpointer=ckpt)
      np.testing.assert_array_equal(again.member_probs, full.member_probs)
      ckpt.close()

  def test_nan_guard_names_method_run_member_step_and_keeps_last_good_checkpoint(self):
    config = testing.tiny_config(num_runs=2, num_steps=6)
    config.lr.base = 1e30
    config.lr.warmup_steps = 3  # lr is 0 at step 1, so step 1 is good and saved.
    config.checkpoint_every_steps = 1
    config.log_every_steps = 1
    ds = testing.tiny_dataset()
    method = methods.build("codistill", config.method_configs["codistill"], 6)
    with tempfile.TemporaryDirectory() as tmp:
      ckpt = checkpoint.MethodCheckpointer(tmp, 1)
      with self.assertRaisesRegex(
          FloatingPointError, r"method 'codistill': non-finite parameters in run \d member \d "
          r"at step [2-6]; the last good checkpoint \(step [1-5]\) is kept"):
        train.train_method(config, ds, method, checkpointer=ckpt)
      steps = sorted(int(s) for s in os.listdir(tmp))
      self.assertNotEmpty(steps)
      state, _ = ckpt.restore_latest(
          train.train_method(testing.tiny_config(2, 1), ds, method).state)
      leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)]
      self.assertTrue(all(np.isfinite(x).all() for x in leaves))
      ckpt.close()


if __name__ == "__main__":
  absltest.main()
