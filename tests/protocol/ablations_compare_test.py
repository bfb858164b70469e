"""launch/ablations.py --compare_to: each method against its namesake in another study,
paired by run, Holm per column; checked against scipy and Holm by hand."""

import json
import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np
from scipy import stats as sp_stats

from tests import testing


def _module():
  return testing.load_file("launch/ablations.py", "ablations_compare")


def entry(acc, churn_pairs, schurn_pairs):
  return {"num_runs": len(acc),
          "accuracy": {"mean": float(np.mean(acc)), "values": list(acc)},
          "churn": {"mean": float(np.mean(churn_pairs)), "values": list(churn_pairs)},
          "schurn": {"mean": float(np.mean(schurn_pairs)), "values": list(schurn_pairs)}}


class AgainstStudyTest(absltest.TestCase):

  def test_paired_by_run_holm_per_column(self):
    rng = np.random.default_rng(0)
    mk = lambda shift: entry(0.9 + shift + rng.normal(0, 0.01, 4), rng.uniform(0, .1, 6),
                             rng.uniform(0, .1, 6))
    ours = {"methods": {"entropy": mk(0.02), "skl": mk(0.0), "baseline": mk(0.0)}}
    other = {"methods": {"entropy": mk(0.0), "skl": mk(0.0), "baseline": mk(0.0)}}
    table = _module().against_study(ours, other, ["baseline", "entropy", "skl", "gone"],
                                    "all classes")
    lines = table.strip().splitlines()
    self.assertEqual(lines[0], "| method | Δchurn vs all classes | Δaccuracy vs all classes | "
                               "ΔSChurn vs all classes |")
    # The baseline is listed only when asked for; a method missing from either side is not.
    self.assertEqual([l.split(" | ")[0] for l in lines[2:]],
                     ["| baseline", "| entropy", "| skl"])
    acc = lambda r, n: np.asarray(r["methods"][n]["accuracy"]["values"])
    p = [sp_stats.ttest_rel(acc(ours, n), acc(other, n)).pvalue
         for n in ("baseline", "entropy", "skl")]
    order = np.argsort(p)
    holm, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
      running = max(running, min(1.0, (3 - rank) * p[i]))
      holm[i] = running
    for line, n, ph in zip(lines[2:], ("baseline", "entropy", "skl"), holm):
      diff = 100 * (acc(ours, n).mean() - acc(other, n).mean())
      acc_cell = line.split(" | ")[2]
      self.assertTrue(acc_cell.startswith(f"{round(diff, 2) + 0.0:+.2f} ["), acc_cell)
      self.assertIn(f"p={ph:.3f}, Holm" if ph >= 0.001 else "p<0.001, Holm", acc_cell)


class CompareToFolderTest(absltest.TestCase):
  """--compare_to is checked before training: every sub-study's results.json must be there
  (gs:// folders: tests/runtime/gcs_emulator_test.py)."""

  def test_every_sub_study_needs_its_results(self):
    ablations = _module()
    config = testing.tiny_config()
    other = tempfile.mkdtemp(prefix="compare_to_")
    names = [name for name, _ in ablations.sub_configs(config, "table3")]
    self.assertEqual(names, ["weight_decay=0", f"weight_decay={config.optimizer.weight_decay:g}"])
    problem = lambda study: ablations.compare_to_problem(config, study, other)
    self.assertEqual(problem("topk"), f"--compare_to {other} is not a finished topk study: "
                                      f"{other}/results.json is missing")
    os.makedirs(os.path.join(other, names[0]))
    with open(os.path.join(other, names[0], "results.json"), "w") as f:
      json.dump({"methods": {"baseline": {"num_runs": 2}}}, f)
    # One of Table 3's two sub-studies is there: the other one is named.
    self.assertEqual(problem("table3"), f"--compare_to {other} is not a finished table3 study: "
                                        f"{other}/{names[1]}/results.json is missing")
    shutil.copytree(os.path.join(other, names[0]), os.path.join(other, names[1]))
    self.assertIsNone(problem("table3"))
    self.assertEqual(ablations.other_results(other, names[1]),
                     {"methods": {"baseline": {"num_runs": 2}}})


if __name__ == "__main__":
  absltest.main()
