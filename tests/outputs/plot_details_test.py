"""The plot and table details of issue 28: the exact learning-rate schedule, no all-zero
coefficients, a co-distillation loss per model, no stale curve plot, no -0.00, ddof said."""

import json
import os
import shutil
import tempfile

from absl.testing import absltest
import ml_collections
import numpy as np

from churn_jax.outputs import observer, tables
from churn_jax.protocol import stats
from churn_jax.study import regenerate

_CONFIG = {"num_train_steps": 40,
           "lr": {"base": 0.1, "warmup_steps": 4, "decay_steps": [20], "decay_factor": 0.1}}


class CurvePanelsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = tempfile.mkdtemp()
    os.makedirs(os.path.join(self.workdir, observer.CURVES_DIRNAME))
    lr = observer.learning_rate_fn(ml_collections.ConfigDict(_CONFIG).lr)
    for name, loss, coef in (("baseline", 1.0, None), ("codistill", 3.0, 0.5),
                             ("entropy", 2.0, 0.0)):
      with open(observer.curves_path(self.workdir, name), "w") as f:
        for step in range(10, 41, 10):
          runs = {"loss": [loss, loss], "learning_rate": [float(lr(step - 1))] * 2}
          if coef is not None:
            runs["coef/beta"] = [coef, coef]
          f.write(json.dumps({"kind": "train", "step": step, "runs": runs}) + "\n")

  def tearDown(self):
    shutil.rmtree(self.workdir, ignore_errors=True)
    super().tearDown()

  def test_panels(self):
    panels = regenerate._curve_panels(self.workdir, ["baseline", "codistill", "entropy"],
                                      _CONFIG, {"codistill": 2})["training_curves"]
    loss, lr, coefs = panels
    by_label = {s.label: np.asarray(s.y) for s in loss.series}
    np.testing.assert_array_equal(by_label["baseline"], [1.0] * 4)
    np.testing.assert_array_equal(by_label["codistill (sum / 2 members)"], [1.5] * 4)
    (series,) = lr.series  # One schedule, every step, drawn as steps.
    self.assertTrue(series.steps)
    np.testing.assert_array_equal(series.x, np.arange(1, 41))
    want = [0.1 * min(t - 1, 4) / 4 if t - 1 < 4 else (0.1 if t - 1 < 20 else 0.01)
            for t in range(1, 41)]
    np.testing.assert_allclose(series.y, want, rtol=1e-6)
    self.assertEqual([s.label for s in coefs.series], ["codistill beta"])  # entropy's 0 gone.

  def test_stale_curve_plot_removed_and_said(self):
    results = {"config": _CONFIG, "methods": {"baseline": {}, "codistill": {"num_members": 2},
                                              "entropy": {}}}
    written = regenerate.write_plots(self.workdir, results)
    self.assertIn(os.path.join(self.workdir, "plots", "training_curves.png"), written)
    shutil.rmtree(os.path.join(self.workdir, observer.CURVES_DIRNAME))
    removed = []
    regenerate.write_plots(self.workdir, results, removed)
    self.assertEqual(sorted(os.path.basename(p) for p in removed),
                     ["training_curves.csv", "training_curves.png"])
    self.assertFalse(os.path.exists(os.path.join(self.workdir, "plots",
                                                 "training_curves.png")))


class NumberFormatTest(absltest.TestCase):

  def test_no_negative_zero(self):
    self.assertEqual(tables._number(-1e-6, "percent"), "0.00")
    self.assertEqual(tables._number(-1e-5, "natural"), "0.000")
    # The verdict text every table prints (stats.verdict_text) never says -0.00 either.
    d = {"diff": -1e-6, "low": -2e-6, "high": 1e-6, "verdict": "cannot tell", "p_value": 0.9,
         "mde": 0.01}
    self.assertTrue(stats.verdict_text(d).startswith("+0.00 [+0.00, +0.00] cannot tell"))
    d.update(diff=-0.0123, low=-0.02, high=-0.005, verdict="held")
    self.assertTrue(stats.verdict_text(d).startswith("-1.23 [-2.00, -0.50] held"))

  def test_markdown_says_ddof(self):
    results = {"methods": {"baseline": {"num_runs": 2, "accuracy": {
        "mean": 0.5, "std": 0.1, "values": [0.4, 0.6]}}}}
    self.assertIn("ddof=0", tables.format_markdown(results))
    self.assertIn("ddof=0", tables.format_latex(results))


if __name__ == "__main__":
  absltest.main()
