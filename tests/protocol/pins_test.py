"""Lines of the protocol tables and of `compare` that no other test pinned (issue 25 item 7):
the accuracy verdict's better side, churn and SChurn kept apart, the compare intervals'
percentiles. Each test was checked by breaking its line (report of issue 25)."""

from absl.testing import absltest
import numpy as np

from churn_jax.outputs import compare as compare_lib
from churn_jax.protocol import tables

R = 6


def _pairs(values):
  return [v for i in range(R) for v in values[i + 1:]]


def _entry(acc, churn, schurn, sweep=None, val_churn=None):
  rng = np.random.default_rng(int(1000 * acc + 10 * churn))
  a = acc + 0.002 * rng.standard_normal(R)
  c = churn + 0.0005 * rng.standard_normal(R * (R - 1) // 2)
  s = schurn + 0.0005 * rng.standard_normal(R * (R - 1) // 2)
  out = {"num_runs": R}
  for key, values in (("accuracy", a), ("churn", c), ("schurn", s)):
    out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                "values": [float(v) for v in values]}
  if sweep is not None:
    out["sweep"] = {"method": sweep[0], "key": "beta", "value": sweep[1]}
  if val_churn is not None:
    out["validation"] = {"churn": {"mean": val_churn, "std": 0.0}}
  return out


class AccuracyDirectionTest(absltest.TestCase):

  def test_more_accurate_is_held_less_accurate_is_reversed(self):
    results = {"methods": {"baseline": _entry(0.90, 0.05, 0.3),
                           "better": _entry(0.95, 0.05, 0.3),
                           "worse": _entry(0.85, 0.05, 0.3)}}
    rows = {r["method"]: r for r in tables.summary_rows(results, "test")}
    self.assertEqual(rows["better"]["d_accuracy"]["verdict"], "held")
    self.assertEqual(rows["worse"]["d_accuracy"]["verdict"], "reversed")
    self.assertIn("held", tables.summary_markdown([rows["baseline"], rows["better"]]))


class ChurnIsNotSChurnTest(absltest.TestCase):

  def test_tables_keep_churn_and_schurn_apart(self):
    # Churn and SChurn rank the two points in opposite order and differ in scale.
    results = {"methods": {
        "baseline": _entry(0.9, 0.05, 0.30),
        "m@beta=1": _entry(0.9, 0.02, 0.50, ("m", 1.0), val_churn=0.02),
        "m@beta=2": _entry(0.9, 0.04, 0.10, ("m", 2.0), val_churn=0.04)}}
    rows = tables.groups(results)["m"]
    self.assertEqual(tables.select(rows, "test"), "m@beta=1")  # Lowest churn, not SChurn.
    summary = {r["method"]: r for r in tables.summary_rows(results, "test")}["m"]
    entry, base = results["methods"]["m@beta=1"], results["methods"]["baseline"]
    for key in ("churn", "schurn"):
      self.assertAlmostEqual(summary[f"d_{key}"]["diff"],
                             np.mean(entry[key]["values"]) - np.mean(base[key]["values"]))
      self.assertEqual(summary[key], entry[key])
    line = tables.summary_markdown([summary]).splitlines()[2].split(" | ")
    self.assertEqual(line[4], f"{100 * entry['churn']['mean']:.2f} ± "
                              f"{100 * entry['churn']['std']:.2f}")       # churn %
    self.assertEqual(line[5], f"{entry['schurn']['mean']:.3f} ± {entry['schurn']['std']:.3f}")
    md = tables.coefficient_table(results)
    point = next(l for l in md.splitlines() if "beta=2" in l).split(" | ")
    churn2 = results["methods"]["m@beta=2"]["churn"]
    self.assertEqual(point[4], f"{100 * churn2['mean']:.2f} ± {100 * churn2['std']:.2f}")


class CompareIntervalTest(absltest.TestCase):

  def test_intervals_are_95_percent(self):
    # n = 2000 examples, 200 flips: the bootstrap 95% interval of the churn is close to the
    # normal one, +-1.96 se; a 90% interval (5/95 percentiles) would be +-1.64 se.
    n, flips = 2000, 200
    classes_a = np.zeros(n, np.int64)
    classes_b = classes_a.copy()
    classes_b[:flips] = 1
    labels = classes_a.copy()
    labels[flips:flips + 300] = 1  # A wrong on 300, B wrong on 1800 + ... : cells differ.
    a = compare_lib.model_from_array(classes_a, "A")
    b = compare_lib.model_from_array(classes_b, "B")
    out = compare_lib.compare(a, b, labels, bootstrap=40000)
    p = flips / n
    se = np.sqrt(p * (1 - p) / n)
    lo, hi = out["churn_ci95"]
    self.assertAlmostEqual((hi - lo) / 2, 1.96 * se, delta=0.06 * se)
    ra, rb = classes_a == labels, classes_b == labels
    d = (rb & ~ra).astype(float) - (ra & ~rb).astype(float)
    se_d = d.std() / np.sqrt(n)
    lo, hi = out["accuracy_b_minus_a_ci95"]
    self.assertAlmostEqual((hi - lo) / 2, 1.96 * se_d, delta=0.06 * se_d)


if __name__ == "__main__":
  absltest.main()
