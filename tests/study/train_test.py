"""Whole-study smoke tests: the library entry point on the quick MNIST-1D config.

The command line's overrides and printed table are checked on the shared reference study of
tests/runtime/faults_test.py; a typo in an override there and in tests/outputs/compare_test.py.
"""

import json
import os
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax import metrics
from churn_jax.study import train
from experiments import mnist1d


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


if __name__ == "__main__":
  absltest.main()
