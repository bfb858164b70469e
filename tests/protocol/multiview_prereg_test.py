"""experiments/multiview_prereg.py: the pre-registered rule, against scipy and Holm by hand."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np
from scipy import stats as sp_stats

from experiments import multiview_prereg


def slices(acc_single, pairs_single):
  return {"single": {"accuracy": list(acc_single), "churn_pairs": list(pairs_single)},
          "all": {"accuracy": [0.0] * len(acc_single), "churn_pairs": [0.0] * len(pairs_single)}}


class PreregTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.8, 6)
    shifts = {"ensemble4": 0.2, "ens_distill": 0.05, "self_distill": -0.01}
    self.acc = {"baseline": base}
    self.acc.update({m: base + s + rng.normal(0, 0.03, 6) for m, s in shifts.items()})
    self.values = {"methods": {m: slices(a, rng.uniform(0, 0.4, 15))
                               for m, a in self.acc.items()}}

  def test_accuracy_verdicts_are_paired_t_with_holm(self):
    got = dict(multiview_prereg.verdicts(self.values, "accuracy"))
    p = {m: sp_stats.ttest_rel(self.acc[m], self.acc["baseline"]).pvalue
         for m in multiview_prereg.CLAIMED}
    order = sorted(p, key=p.get)  # Holm by hand: 3 comparisons.
    holm, running = {}, 0.0
    for rank, m in enumerate(order):
      running = max(running, min(1.0, (3 - rank) * p[m]))
      holm[m] = running
    for m in multiview_prereg.CLAIMED:
      d = got[m]
      self.assertAlmostEqual(d["diff"], (self.acc[m] - self.acc["baseline"]).mean(), places=12)
      self.assertAlmostEqual(d["p_value"], p[m], places=10)
      self.assertAlmostEqual(d["p_holm"], holm[m], places=10)
      expected = "cannot tell" if holm[m] >= 0.05 else ("held" if d["diff"] > 0 else "reversed")
      self.assertEqual(d["verdict"], expected)
    self.assertEqual(got["ensemble4"]["verdict"], "held")

  def test_churn_reads_the_pairs_of_the_single_view_slice(self):
    got = dict(multiview_prereg.verdicts(self.values, "churn"))
    m = self.values["methods"]
    for name in multiview_prereg.CLAIMED:
      self.assertAlmostEqual(got[name]["diff"], np.mean(m[name]["single"]["churn_pairs"])
                             - np.mean(m["baseline"]["single"]["churn_pairs"]), places=12)

  def test_bad_file_one_line_exit_1(self):
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "bad.json")
      with open(path, "w") as f:
        json.dump({"methods": {"baseline": {}}}, f)
      proc = subprocess.run([sys.executable, "experiments/multiview_prereg.py", path],
                            capture_output=True, text=True, check=False,
                            env=dict(os.environ, PYTHONPATH=os.getcwd()))
      self.assertEqual(proc.returncode, 1)
      self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
      self.assertEqual(os.listdir(tmp), ["bad.json"])


class SlicesScriptStartsTest(absltest.TestCase):
  """multiview_slices.py's start (device count, config checks): a wrong data set is one line
  and exit 1. It once died here with a TypeError (a changed requested_count signature)."""

  def test_wrong_data_one_line_exit_1(self):
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, "out.json")
      proc = subprocess.run(
          [sys.executable, "experiments/multiview_slices.py",
           "--config=experiments/digits.py", f"--out={out}"],
          capture_output=True, text=True, check=False,
          env=dict(os.environ, PYTHONPATH=os.getcwd()))
      self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
      errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
      self.assertEqual(errors, ["error: data.name must be 'multiview' (it has the slices), "
                                "got 'digits'"])
      self.assertEqual(os.listdir(tmp), [])


if __name__ == "__main__":
  absltest.main()
