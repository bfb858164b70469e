"""`churn-jax report WORKDIR` re-derives every verdict from the predictions (no retraining):
a workdir built by hand from simulated predictions, with stale numbers in results.json and an
old differences.csv, comes out with the verdicts an independent recomputation gives, and the
verdicts that changed listed."""

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax.cli import command as cli
from churn_jax.outputs import predictions
from churn_jax.protocol import simulate, stats, tables
from churn_jax.study import evaluate

RUNS = 5


def _build(workdir):
  """baseline, a method with lower churn, one with higher accuracy; run r paired."""
  rng = np.random.default_rng(0)
  logits, labels = simulate.sample_logits(rng, 1, RUNS, num_examples=400, num_classes=5,
                                          effect="churn", size=0.8)
  base, label_set = logits[0, 0], labels[0]
  # sharp: the baseline's runs with a larger true-class margin and a little noise of its own.
  sharp = base + 0.3 * np.eye(5, dtype=np.float32)[label_set] + 0.1 * rng.standard_normal(
      base.shape, dtype=np.float32)
  probs = {"baseline": simulate.softmax(base), "steady": simulate.softmax(logits[0, 1]),
           "sharp": simulate.softmax(sharp)}
  methods = {}
  for name in ("baseline", "steady", "sharp"):
    entry = evaluate.summarize(probs[name], label_set)
    entry["predictions"] = predictions.save(workdir, name, probs[name], None, label_set,
                                            range(RUNS), "member0")
    methods[name] = entry
  return methods, probs, label_set


class ReportTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)

  def test_report_rederives_verdicts_from_predictions(self):
    methods, probs, labels = _build(self.workdir)
    stale = json.loads(json.dumps(methods))
    stale["steady"]["churn"]["values"] = [0.9] * len(stale["steady"]["churn"]["values"])
    stale["steady"]["churn"]["mean"] = 0.9
    with open(os.path.join(self.workdir, "results.json"), "w") as f:
      json.dump({"methods": stale}, f)
    # An old table: the bootstrap era's columns, and a verdict the new statistics overturn.
    with open(os.path.join(self.workdir, "differences.csv"), "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["method", "d_churn_verdict", "d_accuracy_verdict"])
      writer.writerow(["steady", "reversed", "not held"])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      # A results.json its predictions contradict is refused, then rewritten on request.
      self.assertEqual(cli.main(["report", self.workdir]), 1)
      self.assertIn("steady.churn", err.getvalue())
      self.assertEqual(cli.main(["report", "--repair", self.workdir]), 0)
    self.assertIn("repaired steady.churn", err.getvalue())

    # Independent recomputation: summaries from the probabilities, one test per cell, Holm
    # over each column's two methods.
    fresh = {n: evaluate.summarize(probs[n], labels) for n in probs}
    with open(os.path.join(self.workdir, "differences.csv"), newline="") as f:
      rows = {r["method"]: r for r in csv.DictReader(f)}
    for _, key in tables.DIFF_METRICS:
      ds = [stats.difference(fresh[n], fresh["baseline"], key) for n in ("steady", "sharp")]
      adjusted = stats.holm([d["p_value"] for d in ds])
      for name, d, p in zip(("steady", "sharp"), ds, adjusted):
        row = rows[name]
        self.assertAlmostEqual(float(row[f"d_{key}_p_value"]), d["p_value"], places=9)
        self.assertAlmostEqual(float(row[f"d_{key}_p_holm"]), p, places=9)
        self.assertEqual(row[f"d_{key}_verdict"], stats.decide(d, p), f"{name} {key}")
    # The stated effects show: steady's churn and sharp's accuracy are held.
    self.assertEqual(rows["steady"]["d_churn_verdict"], "held")
    self.assertEqual(rows["sharp"]["d_accuracy_verdict"], "held")
    with open(os.path.join(self.workdir, "verdict_changes.md")) as f:
      changes = f.read()
    self.assertIn("differences.csv: steady churn: reversed -> held", changes)
    self.assertIn("differences.csv: steady accuracy: not held -> "
                  f"{rows['steady']['d_accuracy_verdict']}", changes)
    with open(os.path.join(self.workdir, "differences.md")) as f:
      text = f.read()
    self.assertIn("Holm", text)
    self.assertNotIn("not held", text)
    with contextlib.redirect_stdout(io.StringIO()):  # Again: now nothing changes.
      self.assertEqual(cli.main(["report", self.workdir]), 0)
    with open(os.path.join(self.workdir, "verdict_changes.md")) as f:
      self.assertIn("No verdict changed.", f.read())

  def test_no_old_tables_no_change_list(self):
    self.assertEqual(tables.write_verdict_changes(self.workdir, {}), [])
    self.assertEqual(os.listdir(self.workdir), [])


if __name__ == "__main__":
  absltest.main()
