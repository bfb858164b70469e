"""Whole-study smoke tests: the library entry point and the CLI on the quick MNIST-1D config."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax import metrics
from churn_jax.study import train
from experiments import mnist1d

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def quick_config(cache_dir):
  config = mnist1d.get_config("quick")
  config.methods = "baseline,codistill"
  config.num_train_steps = 60
  config.lr.decay_steps = (40,)
  config.data.cache_dir = cache_dir
  config.progress = False
  return config


class StudyTest(absltest.TestCase):

  def test_quick_study_results(self):
    with tempfile.TemporaryDirectory() as tmp:
      results = train.train_and_evaluate(quick_config(tmp), os.path.join(tmp, "wd"))
      with open(os.path.join(tmp, "wd", "results.json")) as f:
        on_disk = json.load(f)
      self.assertEqual(set(on_disk["methods"]), {"baseline", "codistill"})
      for name, entry in on_disk["methods"].items():
        self.assertEqual(entry["num_runs"], 3)
        for key in ("accuracy", "churn", "schurn", "churn_correct", "churn_incorrect", "ece"):
          self.assertBetween(entry[key]["mean"], 0.0, 1.0)
          self.assertGreaterEqual(entry[key]["std"], 0.0)
        self.assertLen(entry["churn"]["values"], 3)  # 3 runs -> 3 pairs.
        self.assertLen(entry["accuracy"]["values"], 3)
        self.assertGreater(entry["accuracy"]["mean"], 0.2)  # Better than chance (10%).
      self.assertEqual(on_disk["methods"]["codistill"]["num_members"], 2)
      self.assertEqual(on_disk["methods"]["codistill"]["training_cost"], 2.0)
      self.assertEqual(results["methods"]["baseline"]["churn"], on_disk["methods"]["baseline"]["churn"])
      with open(os.path.join(tmp, "wd", "results.md")) as f:
        table = f.read()
      self.assertIn("| codistill | 3 | 2x | 1x |", table)
      with open(os.path.join(tmp, "wd", "results.csv")) as f:
        self.assertEqual(len(f.read().strip().splitlines()), 3)

  def test_codistill_churn_is_between_deployed_members_of_different_runs(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = quick_config(tmp)
      from churn_jax import data, methods
      ds = data.get_dataset(config.data)
      method = methods.build("codistill", config.method_configs["codistill"], 60)
      out = train.train_method(config, ds, method)
      self.assertEqual(out.member_probs.shape, (3, 2, ds.num_test, 10))
      expected = np.mean([metrics.churn(out.member_probs[i, 0], out.member_probs[j, 0])
                          for i, j in ((0, 1), (0, 2), (1, 2))])
      deployed = method.deployed_probs(out.member_probs)
      np.testing.assert_allclose(metrics.pairwise(metrics.churn, deployed)["mean"], expected,
                                 rtol=1e-6)


class CliTest(absltest.TestCase):

  def _run(self, *flags, cache):
    env = dict(os.environ, PYTHONPATH=ROOT, CHURN_JAX_CACHE=cache)
    return subprocess.run([sys.executable, os.path.join(ROOT, "launch", "main.py"), *flags],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

  def test_cli_overrides_and_table(self):
    with tempfile.TemporaryDirectory() as tmp:
      proc = self._run("--config=experiments/mnist1d.py:quick", f"--workdir={tmp}/wd",
                       "--config.methods=baseline", "--config.num_runs=2",
                       "--config.num_train_steps=30", "--config.progress=False", cache=tmp)
      self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
      self.assertIn("| baseline | 2 | 1x | 1x |", proc.stdout)
      with open(os.path.join(tmp, "wd", "results.json")) as f:
        self.assertEqual(json.load(f)["methods"]["baseline"]["num_runs"], 2)

  def test_cli_typo_in_override_fails(self):
    with tempfile.TemporaryDirectory() as tmp:
      proc = self._run("--config=experiments/mnist1d.py:quick", f"--workdir={tmp}/wd",
                       "--config.num_runz=2", cache=tmp)
      self.assertNotEqual(proc.returncode, 0)
      self.assertIn("num_runz", proc.stderr)
      self.assertFalse(os.path.exists(os.path.join(tmp, "wd")))


if __name__ == "__main__":
  absltest.main()
