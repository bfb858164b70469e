"""Resume in process: identical reruns, a corrupt latest checkpoint, the NaN guard.

A SIGKILLed study through the command line resuming to bitwise the same results is checked
with the other signals against one shared reference study in tests/runtime/faults_test.py.
"""

import glob
import os
import tempfile

from absl.testing import absltest
import jax
import numpy as np

from churn_jax import methods
from churn_jax.runtime import checkpoint
from churn_jax.study import train
from tests import testing


def read(path):
  with open(path, "rb") as f:
    return f.read()


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
