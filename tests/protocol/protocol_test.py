"""The App. A protocol tables and the statistics behind every held / did not hold."""

import csv
import io
import os
import tempfile

from absl.testing import absltest
import numpy as np
from scipy import stats as sp_stats

from churn_jax import metrics
from churn_jax.protocol import stats, tables
from churn_jax.study import evaluate


def _summary(values):
  values = list(map(float, values))
  return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def _entry(acc, churn, val_churn=None, sweep=None, runs=3):
  entry = {"num_runs": runs, "accuracy": _summary(acc), "churn": _summary(churn)}
  for key in ("schurn", "churn_correct", "ece"):
    entry[key] = _summary(churn)
  entry["entropy"], entry["nll"] = _summary(acc), _summary(acc)
  if val_churn is not None:
    entry["validation"] = {"num_runs": runs, "churn": _summary(val_churn)}
  if sweep:
    entry["sweep"] = {"method": sweep[0], "key": "beta", "value": sweep[1]}
  return entry


def _results():
  return {"methods": {
      "baseline": _entry([.80, .81, .82], [.10, .10, .10], [.1, .1, .1]),
      # Lowest test churn at 0.1, lowest validation churn at 0.2.
      "ent@beta=0.1": _entry([.80, .80, .80], [.04, .04, .04], [.09, .09, .09], ("ent", 0.1)),
      "ent@beta=0.2": _entry([.81, .81, .81], [.06, .06, .06], [.05, .05, .05], ("ent", 0.2)),
  }}


class StatsTest(absltest.TestCase):

  def test_pair_matrix_follows_metrics_pairwise_order(self):
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 20)).astype(np.float32)
    matrix = stats.pair_matrix(metrics.pairwise(metrics.churn, probs)["values"], 4)
    for i, j in ((0, 3), (2, 1), (1, 3)):
      expected = np.mean(probs[i].argmax(-1) != probs[j].argmax(-1))
      self.assertAlmostEqual(matrix[i, j], expected, places=6)

  def test_constant_differences_give_a_point_interval_and_verdicts(self):
    res = _results()["methods"]
    d = stats.difference(res["ent@beta=0.1"], res["baseline"], "churn")
    self.assertAlmostEqual(d["diff"], -0.06)
    self.assertAlmostEqual(d["low"], -0.06)
    self.assertAlmostEqual(d["high"], -0.06)
    self.assertEqual(d["verdict"], "held")
    d = stats.difference(res["ent@beta=0.1"], res["baseline"], "churn", lower_is_better=False)
    self.assertEqual(d["verdict"], "reversed")

  def test_per_run_metric_is_the_paired_t_test(self):
    a = {"num_runs": 4, "accuracy": _summary([.80, .82, .81, .83])}
    b = {"num_runs": 4, "accuracy": _summary([.78, .81, .79, .80])}
    d = stats.difference(a, b, "accuracy")
    x, y = np.array(a["accuracy"]["values"]), np.array(b["accuracy"]["values"])
    self.assertAlmostEqual(d["p_value"], sp_stats.ttest_rel(x, y).pvalue, places=10)
    half = sp_stats.t.ppf(0.975, 3) * (x - y).std(ddof=1) / 2
    self.assertAlmostEqual(d["low"], (x - y).mean() - half, places=10)
    self.assertEqual(d["df"], 3)
    # Minimum detectable effect at 80% power: (t_{0.975} + t_{0.80}) standard errors (the
    # textbook normal-shift form; t_{0.975,3} = 3.182, t_{0.80,3} = 0.978 from a t table).
    se = (x - y).std(ddof=1) / 2
    self.assertAlmostEqual(d["mde"], (sp_stats.t.ppf(0.975, 3) + sp_stats.t.ppf(0.8, 3)) * se,
                           places=10)
    self.assertAlmostEqual(d["mde"] / se, 3.182 + 0.978, places=2)

  def test_unequal_runs_fall_back_to_welch(self):
    a = {"num_runs": 4, "accuracy": _summary([.80, .82, .81, .83])}
    b = {"num_runs": 3, "accuracy": _summary([.78, .79, .77])}
    x, y = np.array(a["accuracy"]["values"]), np.array(b["accuracy"]["values"])
    d = stats.difference(a, b, "accuracy")
    self.assertEqual(d["test"], "jackknife Welch t")
    self.assertAlmostEqual(d["p_value"], sp_stats.ttest_ind(x, y, equal_var=False).pvalue,
                           places=10)

  def test_pair_metric_jackknife_leaves_runs_out(self):
    # Run 0 disagrees with everyone, runs 1-3 agree: the pairs are far from independent.
    churn = [1, 1, 1, 0, 0, 0]  # (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    reps = stats.jackknife_values(_summary(churn), "churn", 4)
    # Without run 0 only (1,2) (1,3) (2,3) remain: 0; without run 1: (0,2) (0,3) (2,3) = 2/3.
    np.testing.assert_allclose(reps, [0, 2 / 3, 2 / 3, 2 / 3])
    entry = {"num_runs": 4, "churn": _summary(churn)}
    base = {"num_runs": 4, "churn": _summary([0] * 6)}
    d = stats.difference(entry, base, "churn")
    se = np.sqrt(3 / 4 * np.sum((reps - reps.mean()) ** 2))
    self.assertAlmostEqual(d["se"], se)
    self.assertAlmostEqual(d["p_value"], 2 * sp_stats.t.sf(0.5 / se, 3))
    self.assertEqual(d["verdict"], "cannot tell")
    self.assertGreater(d["mde"], 0.5)  # It could not have detected the 0.5 it saw.

  def test_undefined_slice_pairs_are_left_out(self):
    values = [0.2, None, 0.4, 0.1, 0.3, 0.5]
    reps = stats.jackknife_values({"values": values}, "churn_correct", 4)
    # Without run 1: pairs (0,2)=None, (0,3)=0.4, (2,3)=0.5.
    self.assertAlmostEqual(reps[1], 0.45)
    self.assertAlmostEqual(reps[0], np.mean([0.1, 0.3, 0.5]))

  def test_too_few_runs(self):
    a = {"num_runs": 2, "churn": _summary([0.1]), "accuracy": _summary([.8, .9])}
    d = stats.difference(a, a, "churn")
    self.assertEqual(d["verdict"], "too few runs")
    self.assertIsNone(d["low"])
    self.assertEqual(stats.verdict_text(d), "+0.00 too few runs")

  def test_holm_matches_the_step_down_rule(self):
    p = [0.01, 0.04, None, 0.03, 0.005]
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, running maximum.
    self.assertEqual(stats.holm(p), [0.03, 0.06, None, 0.06, 0.02])
    ds = [dict(diff=-1.0, p_value=q, level=0.95, lower_is_better=True)
          for q in (0.01, 0.03, 0.04)]
    stats.judge(ds)  # Unadjusted, all three would be held.
    self.assertEqual([d["verdict"] for d in ds], ["held", "cannot tell", "cannot tell"])
    np.testing.assert_allclose([d["p_holm"] for d in ds], [0.03, 0.06, 0.06])

  def test_a_metric_without_a_better_side_needs_one(self):
    a = {"num_runs": 3, "entropy": _summary([1, 2, 3])}
    with self.assertRaisesRegex(ValueError, "entropy: no better side"):
      stats.difference(a, a, "entropy")


class TablesTest(absltest.TestCase):

  def test_selection_on_test_and_on_validation(self):
    rows = tables.groups(_results())["ent"]
    self.assertEqual([v for _, v, _ in rows], [0.1, 0.2])
    self.assertEqual(tables.select(rows, "test"), "ent@beta=0.1")
    self.assertEqual(tables.select(rows, "validation"), "ent@beta=0.2")
    md = tables.coefficient_table(_results())
    self.assertIn("| ent | beta=0.1 | 3 | 80.00 ± 0.00 | 4.00 ± 0.00 |", md)
    line_02 = next(line for line in md.splitlines() if "beta=0.2" in line)
    self.assertTrue(line_02.endswith("| val |"), line_02)

  def test_summary_and_files(self):
    summary = tables.summary_rows(_results(), "validation")
    self.assertEqual([r["entry"] for r in summary], ["baseline", "ent@beta=0.2"])
    self.assertAlmostEqual(summary[1]["d_churn"]["diff"], -0.04)
    self.assertEqual(summary[1]["d_churn"]["verdict"], "held")
    with tempfile.TemporaryDirectory() as d:
      paths = tables.write_protocol(d, _results(), "# header")
      names = {os.path.basename(p) for p in paths}
      for ext in ("md", "csv", "tex"):
        self.assertIn(f"protocol_table2_validation.{ext}", names)
        self.assertIn(f"protocol_table2_test.{ext}", names)
      with open(os.path.join(d, "protocol_table2_test.csv")) as f:
        rows = list(csv.DictReader(f))
      self.assertEqual(rows[1]["entry"], "ent@beta=0.1")
      self.assertAlmostEqual(float(rows[1]["churn_mean"]), 0.04)
      with open(os.path.join(d, "protocol_curves.csv")) as f:
        curve = list(csv.DictReader(io.StringIO(f.read())))
      self.assertEqual([float(r["coefficient"]) for r in curve], [0.1, 0.2])
      self.assertIn("protocol_curves.png", names)
      with open(os.path.join(d, "protocol_table2_test.tex")) as f:
        self.assertIn(r"\toprule", f.read())

  def test_tables_read_real_summaries(self):
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(3, 30)).astype(np.float32)
    labels = np.zeros(30, np.int64)
    entry = evaluate.summarize(probs, labels)
    res = {"methods": {"baseline": entry, "x@beta=1": dict(entry, sweep={
        "method": "x", "key": "beta", "value": 1.0})}}
    summary = tables.summary_rows(res, "test")
    self.assertEqual(summary[1]["d_churn"]["diff"], 0.0)


if __name__ == "__main__":
  absltest.main()
