"""Whole-study smoke tests: the library entry point on the quick MNIST-1D config.

The command line's overrides and printed table are checked on the shared reference study of
tests/runtime/faults_test.py; a typo in an override there and in tests/outputs/compare_test.py.
"""

import json
import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax import methods, metrics
from churn_jax.outputs import predictions
from churn_jax.study import train
from experiments import mnist1d


def quick_config(cache_dir):
  config = mnist1d.get_config("quick")
  config.methods = "baseline,codistill"
  config.num_train_steps = 60
  config.lr.decay_steps = (40,)
  config.data.cache_dir = cache_dir
  config.progress = False
  config.plots = False  # Neither test looks at plots/.
  return config


class StudyTest(absltest.TestCase):
  """One quick study, trained once for both tests."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.results = train.train_and_evaluate(quick_config(cls.tmp), os.path.join(cls.tmp, "wd"))

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def test_quick_study_results(self):
    tmp, results = self.tmp, self.results
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
    # The members' probabilities saved by the study above (it used to train codistill again).
    saved = predictions.load(os.path.join(self.tmp, "wd", "predictions", "codistill.npz"))
    members = saved["members"]
    self.assertEqual(members.shape, (3, 2, members.shape[2], 10))
    expected = np.mean([metrics.churn(members[i, 0], members[j, 0])
                        for i, j in ((0, 1), (0, 2), (1, 2))])
    method = methods.build("codistill", quick_config("").method_configs["codistill"], 60)
    deployed = method.deployed_probs(members)
    np.testing.assert_allclose(metrics.pairwise(metrics.churn, deployed)["mean"], expected,
                               rtol=1e-6)
    np.testing.assert_allclose(self.results["methods"]["codistill"]["churn"]["mean"], expected,
                               rtol=1e-6)


if __name__ == "__main__":
  absltest.main()
