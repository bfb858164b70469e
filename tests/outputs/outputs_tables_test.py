"""Tables (md/csv/tex), the predictions file and the plots, on hand-made results (no training)."""

import csv
import hashlib
import io
import os
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax.outputs import plots, predictions, tables
from churn_jax.study import evaluate


def summary(values):
  defined = [v for v in values if v is not None]
  mean = float(np.mean(defined)) if defined else None
  return {"mean": mean, "std": float(np.std(defined)) if defined else None, "values": values}


def results_of(num_runs, incorrect=None):
  pairs = num_runs * (num_runs - 1) // 2
  entry = {"num_runs": num_runs, "num_members": 1, "prediction": "member0",
           "training_cost": 1.0, "inference_cost": 1.0,
           "accuracy": summary([0.9 + 0.01 * r for r in range(num_runs)]),
           "churn": summary([0.1] * pairs), "schurn": summary([1.4123] * pairs),
           "churn_correct": summary([0.05] * pairs),
           "churn_incorrect": summary(incorrect or [0.5] * pairs),
           "ece": summary([0.02 + 0.01 * r for r in range(num_runs)]),
           "pred_diff_l1": summary([1.3212] * pairs)}
  return {"config": {}, "methods": {"base_line": entry}}


class TablesTest(absltest.TestCase):

  def test_two_runs_say_one_pair_and_undefined_is_na(self):
    md = tables.format_markdown(results_of(2, incorrect=[None]))
    row = md.strip().splitlines()[-1].split(" | ")
    self.assertEqual(row[4], "90.50 ± 0.50")  # accuracy: 2 runs, a real std.
    self.assertEqual(row[5], "10.00 (1 pair)")  # churn: one pair, no spread.
    self.assertEqual(row[6], "1.412 (1 pair)")  # SChurn on its natural scale, not 141%.
    self.assertEqual(row[8], "n/a")  # churn incorrect: undefined, not 0.00.
    self.assertEqual(row[10].rstrip(" |"), "1.321 (1 pair)")
    self.assertNotIn("± 0.00", md)

  def test_three_runs_show_spread(self):
    md = tables.format_markdown(results_of(3))
    self.assertIn("| 10.00 ± 0.00 | 1.412 ± 0.000 |", md)

  def test_csv_holds_every_run_and_pair(self):
    rows = list(csv.DictReader(io.StringIO(tables.format_csv(results_of(3, [0.5, None, 0.7])))))
    self.assertLen(rows, 1)
    row = rows[0]
    self.assertEqual(row["method"], "base_line")
    self.assertEqual([float(row[f"accuracy_run{r}"]) for r in range(3)], [0.9, 0.91, 0.92])
    self.assertEqual(row["churn_incorrect_run0_vs_run2"], "n/a")
    self.assertEqual(float(row["churn_incorrect_mean"]), 0.6)
    self.assertEqual(float(row["schurn_run1_vs_run2"]), 1.4123)

  def test_latex_is_booktabs_with_escaped_names(self):
    tex = tables.format_latex(results_of(2, incorrect=[None]))
    for part in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{lrrrrrrrrrr}",
                 "base\\_line & 2 & 1$\\times$", "$90.50 \\pm 0.50$", "10.00 (1 pair)", "n/a",
                 "accuracy \\%"):
      self.assertIn(part, tex)

  def test_summary_marks_empty_slices_undefined(self):
    labels = np.array([0, 1, 1, 0])
    perfect = np.eye(2)[labels] * 0.9 + 0.05
    other = np.eye(2)[[0, 1, 0, 0]] * 0.9 + 0.05  # wrong on example 2
    out = evaluate.summarize(np.stack([perfect, perfect, other]), labels)
    # Pair (0, 1): both runs right everywhere -> incorrect slice empty in both: undefined.
    self.assertEqual(out["churn_incorrect"]["values"][0], None)
    self.assertEqual(out["churn_incorrect"]["values"][1:], [1.0, 1.0])
    self.assertEqual(out["churn_incorrect"]["mean"], 1.0)
    self.assertEqual(out["churn_correct"]["values"], [0.0, 0.125, 0.125])  # (0 + 1/4) / 2
    none = evaluate.summarize(np.stack([perfect, perfect]), labels)["churn_incorrect"]
    self.assertEqual(none, {"mean": None, "std": None, "values": [None]})


class PredictionsFileTest(absltest.TestCase):

  def test_round_trip_deterministic_bytes_and_sha(self):
    rng = np.random.default_rng(0)
    members = rng.dirichlet(np.ones(4), size=(3, 2, 5)).astype(np.float32)
    deployed = members.mean(1)
    labels = rng.integers(0, 4, 5)
    with tempfile.TemporaryDirectory() as tmp:
      info = predictions.save(f"{tmp}/a", "ens", deployed, members, labels, [0, 1, 2],
                              "ensemble_mean")
      again = predictions.save(f"{tmp}/b", "ens", deployed, members, labels, [0, 1, 2],
                               "ensemble_mean")
      self.assertEqual(info, again)  # Same predictions, same bytes, same sha256.
      self.assertEqual(info["path"], "predictions/ens.npz")
      with open(f"{tmp}/a/predictions/ens.npz", "rb") as f:
        self.assertEqual(hashlib.sha256(f.read()).hexdigest(), info["sha256"])
      loaded = predictions.load(f"{tmp}/a/predictions/ens.npz")
      np.testing.assert_array_equal(loaded["members"], members)
      np.testing.assert_array_equal(loaded["deployed"], deployed)
      np.testing.assert_array_equal(loaded["example_ids"], np.arange(5))
      self.assertEqual(loaded["prediction"], "ensemble_mean")
      self.assertEqual(predictions.check(f"{tmp}/a", "ens", info),
                       f"{tmp}/a/predictions/ens.npz")
      single = predictions.save(tmp, "base", deployed, members[:, :1], labels, [0, 1, 2],
                                "member0")
      self.assertNotIn("members", predictions.load(os.path.join(tmp, single["path"])))
      self.assertEqual([n for n in os.listdir(f"{tmp}/a/predictions")], ["ens.npz"])


class PlotsTest(absltest.TestCase):

  def test_panels_write_png_and_csv_of_the_data(self):
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "sweep.png")
      # A coefficient sweep: churn against beta, the same helper as training curves.
      plots.plot_panels(path, [plots.Panel("churn vs beta", "beta", "churn (%)", [
          plots.Series("codistill", [0.5, 1, 2], [10, 9, 8.5], [9.5, 8.7, 8], [10.5, 9.2, 9])])])
      with open(path, "rb") as f:
        self.assertEqual(f.read(4), b"\x89PNG")
      with open(os.path.join(tmp, "sweep.csv")) as f:
        rows = list(csv.reader(f))
      self.assertEqual(rows[0], ["panel", "label", "x", "y", "lo", "hi"])
      self.assertEqual(rows[2], ["churn vs beta", "codistill", "1.0", "9.0", "8.7", "9.2"])

  def test_tradeoff_png_grows_only_for_a_legend_taller_than_the_figure(self):
    def png_size(names):
      points = [plots.TradeoffPoint(n, 0.02 + 0.001 * i, 0.005, 0.9, 0.004, 2.0, 1.0)
                for i, n in enumerate(names)]
      with tempfile.TemporaryDirectory() as tmp:
        plots.plot_tradeoff(os.path.join(tmp, "t.png"), points, "test")
        with open(os.path.join(tmp, "t.png"), "rb") as f:
          header = f.read(24)
      return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    # The figure as made (8.4 x 4.8 in at 110 dpi): one draw, the legend fits beside the axes.
    self.assertEqual(png_size(["baseline", "codistill"]), (924, 528))
    # 45 sweep points: the legend sticks out, so the image grows to hold all of it.
    width, height = png_size([f"codistill@beta={b:g}" for b in np.linspace(0.1, 4.5, 45)])
    self.assertGreater(height, 528)

  def test_reliability_bins_pool_runs(self):
    probs = np.array([[[0.95, 0.05], [0.6, 0.4]], [[0.95, 0.05], [0.3, 0.7]]])
    lo, hi, count, conf, acc = plots.reliability_bins(probs, np.array([0, 0]), num_bins=10)
    self.assertEqual(count.tolist(), [0, 0, 0, 0, 0, 1, 1, 0, 0, 2])  # 0.6, 0.7, 0.95 x2
    self.assertAlmostEqual(conf[9], 0.95)
    self.assertEqual(acc[9], 1.0)
    self.assertEqual(acc[6], 0.0)  # 0.7 on class 1, label 0
    self.assertTrue(np.isnan(acc[0]))


if __name__ == "__main__":
  absltest.main()
