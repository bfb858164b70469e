"""examples/custom: a user's own model, dataset and method, trained through the Python API.

The package lives outside churn_jax and is found by import path only, so this pins the
contract a user's code relies on (README "Your own model, data and method").
"""

import glob
import json
import os
import shutil
import sys
import tempfile

from absl.testing import absltest
import numpy as np

import churn_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "custom")


def _pairwise_churn(deployed):
  classes = deployed.argmax(-1)
  return np.mean([(classes[i] != classes[j]).mean() for i in range(len(classes))
                  for j in range(i + 1, len(classes))])


class CustomExampleTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    sys.path.insert(0, EXAMPLE)
    cls.workdir = tempfile.mkdtemp()
    config = churn_jax.load_config(os.path.join(EXAMPLE, "config.py"))
    config.num_train_steps = 40  # The shipped 150 steps, shortened for the test.
    config.lr.decay_steps = (30,)
    cls.config = config
    cls.results = churn_jax.run_study(config, cls.workdir)

  @classmethod
  def tearDownClass(cls):
    sys.path.remove(EXAMPLE)
    shutil.rmtree(cls.workdir)
    super().tearDownClass()

  def test_the_users_code_is_what_trained(self):
    self.assertEqual(self.results["data"]["source"], "import")
    self.assertEqual(self.results["data"]["path"], "churn_custom.data:load")
    mine = self.results["methods"]["prob_match"]
    self.assertEqual((mine["num_members"], mine["training_cost"], mine["num_runs"]), (2, 2.0, 3))
    # The user's loss logged its own metric (prob_match) at every log step.
    with open(os.path.join(self.workdir, "curves", "prob_match.jsonl")) as f:
      steps = [json.loads(line) for line in f if '"train"' in line]
    self.assertTrue(steps and all("prob_match" in s["runs"] for s in steps))

  def test_table_and_results_json_agree_with_numpy(self):
    with open(os.path.join(self.workdir, "results.json")) as f:
      written = json.load(f)
    self.assertEqual(churn_jax.format_table(written), churn_jax.format_table(self.results))
    table = [l for l in churn_jax.format_table(self.results).splitlines()
             if l.startswith("| ") and not l.startswith("| method")]  # Rows, not legend/header.
    self.assertEqual([row.split(" | ")[0] for row in table], ["| baseline", "| prob_match"])
    for name in ("baseline", "prob_match"):
      pred = churn_jax.load_predictions(self.workdir, name)
      self.assertEqual(pred["deployed"].shape, (3, 300, 3))
      churn = _pairwise_churn(pred["deployed"])
      self.assertAlmostEqual(self.results["methods"][name]["churn"]["mean"], churn, places=9)
      accuracy = (pred["deployed"].argmax(-1) == pred["labels"]).mean()
      self.assertAlmostEqual(self.results["methods"][name]["accuracy"]["mean"], accuracy,
                             places=6)
      row = next(r for r in table if r.startswith(f"| {name} |"))
      self.assertEqual(row.split(" | ")[5].split(" ± ")[0], f"{100 * churn:.2f}")

  def test_compare_of_two_runs(self):
    pred = churn_jax.load_predictions(self.workdir, "baseline")
    a, b = pred["deployed"][0], pred["deployed"][1]
    out = churn_jax.compare(a, b, labels=pred["labels"], bootstrap=50)
    self.assertAlmostEqual(out["churn"], (a.argmax(1) != b.argmax(1)).mean(), places=12)
    self.assertAlmostEqual(out["accuracy_a"], (a.argmax(1) == pred["labels"]).mean(), places=12)
    self.assertAlmostEqual(out["pred_diff_l1"], np.abs(a - b).sum(1).mean(), places=5)

  def test_a_second_run_study_reuses_the_results(self):
    again = churn_jax.run_study(self.config, self.workdir)
    self.assertEqual(json.dumps(again, sort_keys=True), json.dumps(self.results, sort_keys=True))
    self.assertEqual(sorted(glob.glob(os.path.join(self.workdir, "predictions", "*.npz"))),
                     [os.path.join(self.workdir, "predictions", f"{m}.npz")
                      for m in ("baseline", "prob_match")])


if __name__ == "__main__":
  absltest.main()
