"""Every number in results.json is recomputed from the saved predictions by independent numpy.

One tiny study (a baseline, a co-distillation deploying member 0 and an ensemble deploying
the mean) is trained once; the tests then recompute every cell of results.json (each run's
and pair's value, the mean and the std) from WORKDIR/predictions/<method>.npz with the numpy
below, never with churn_jax.metrics, and compare to 1e-6. A key of results.json this file
does not know how to recompute fails the test, so no metric is left unchecked.
"""

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax import data, methods
from churn_jax.cli import command as cli
from churn_jax.outputs import observer, predictions, tensorboard
from churn_jax.study import regenerate, train
from tests import testing

TOL = 1e-6
ECE_BINS = 15  # The documented bin count (README "Metrics").
SCHURN_ALPHA = 2.0  # Not the default, so a dropped alpha shows.
# What each method must be, known independently of the code under test.
EXPECTED = {
    "baseline": dict(num_members=1, prediction="member0", training_cost=1.0, inference_cost=1.0),
    "codistill": dict(num_members=2, prediction="member0", training_cost=2.0,
                      inference_cost=1.0),
    "ensemble2": dict(num_members=2, prediction="ensemble_mean", training_cost=2.0,
                      inference_cost=2.0),
}


# ---- independent numpy definitions (float64) --------------------------------------------

def _accuracy(p, y):
  return np.mean(p.argmax(-1) == y)


def _ece(p, y):
  conf = p.max(-1)
  correct = (p.argmax(-1) == y).astype(float)
  total = 0.0
  for b in range(ECE_BINS):
    lo, hi = b / ECE_BINS, (b + 1) / ECE_BINS
    in_bin = (conf > lo) & (conf <= hi) if b else (conf <= hi)
    if in_bin.any():
      total += in_bin.sum() / len(y) * abs(correct[in_bin].mean() - conf[in_bin].mean())
  return total


def _nll(p, y):
  return -np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))


def _entropy(p, y):
  del y
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.mean(-np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1))


def _confidence_gap(p, y):
  del y
  top = np.sort(p, axis=-1)
  return np.mean(top[:, -1] - top[:, -2])


def _brier(p, y):
  return np.mean(np.sum((p - np.eye(p.shape[-1])[y]) ** 2, axis=-1))


def _churn(a, b, y):
  del y
  return np.mean(a.argmax(-1) != b.argmax(-1))


def _schurn(a, b, y):
  del y
  na = (a / a.max(-1, keepdims=True)) ** SCHURN_ALPHA
  nb = (b / b.max(-1, keepdims=True)) ** SCHURN_ALPHA
  return 0.5 * np.mean(np.abs(na - nb).sum(-1))


def _slice_churn(want_correct):
  def fn(a, b, y):
    differ = a.argmax(-1) != b.argmax(-1)
    rates = []
    for ref in (a, b):
      mask = (ref.argmax(-1) == y) == want_correct
      if mask.any():
        rates.append(differ[mask].mean())
    return np.mean(rates) if rates else None  # Undefined when both slices are empty.
  return fn


def _diff_l1(a, b, y):
  del y
  return np.mean(np.abs(a - b).sum(-1))


def _diff_l2(a, b, y):
  del y
  return np.mean(np.sqrt(((a - b) ** 2).sum(-1)))


def _diff_relative(a, b, y):
  del y
  tiny = (a < 1e-7) & (b < 1e-7)
  with np.errstate(divide="ignore", invalid="ignore"):
    rel = np.where(tiny, 0.0, 2 * np.abs(a - b) / (a + b))
  return np.mean(rel)


PER_RUN = {"accuracy": _accuracy, "ece": _ece, "nll": _nll, "entropy": _entropy,
           "confidence_gap": _confidence_gap, "brier": _brier}
PAIRWISE = {"churn": _churn, "schurn": _schurn, "churn_correct": _slice_churn(True),
            "churn_incorrect": _slice_churn(False), "pred_diff_l1": _diff_l1,
            "pred_diff_l2": _diff_l2, "pred_diff_relative": _diff_relative}


def summary(values):
  defined = [v for v in values if v is not None]
  if not defined:
    return {"mean": None, "std": None, "values": values}
  return {"mean": float(np.mean(defined)), "std": float(np.std(defined)), "values": values}


def recompute(name, deployed, labels):
  runs = len(deployed)
  pairs = [(i, j) for i in range(runs) for j in range(i + 1, runs)]
  out = {key: summary([fn(p, labels) for p in deployed]) for key, fn in PER_RUN.items()}
  out.update({key: summary([fn(deployed[i], deployed[j], labels) for i, j in pairs])
              for key, fn in PAIRWISE.items()})
  out["num_runs"] = runs
  out.update(EXPECTED[name])
  return out


def assert_summary_close(test, got, want, where):
  test.assertEqual(set(got), {"mean", "std", "values"}, where)
  test.assertLen(got["values"], len(want["values"]), where)
  for part, g, w in ([("mean", got["mean"], want["mean"]), ("std", got["std"], want["std"])]
                     + [(f"values[{i}]", g, w) for i, (g, w) in
                        enumerate(zip(got["values"], want["values"]))]):
    if w is None or g is None:
      test.assertIsNone(g, f"{where}.{part}: expected undefined (None), got {g}")
      test.assertIsNone(w, f"{where}.{part}: expected {w}, got undefined (None)")
    else:
      test.assertLessEqual(abs(g - w), TOL, f"{where}.{part}: results.json {g} vs {w}")


class RecomputeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.workdir = os.path.join(cls.tmp, "wd")
    # Trained once per test run, shared with other files (tests/testing.py: finished_study).
    cls.config = testing.finished_study(cls.workdir)
    assert cls.config.schurn_alpha == SCHURN_ALPHA
    # What the study drew, before any test's `report` redraws plots/.
    plots_dir = os.path.join(cls.workdir, "plots")
    cls.study_plots = sorted(os.listdir(plots_dir)) if os.path.isdir(plots_dir) else []
    with open(os.path.join(cls.workdir, "results.json")) as f:
      cls.results = json.load(f)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def _load(self, name):
    return predictions.load(os.path.join(self.workdir, "predictions", f"{name}.npz"))

  def test_every_cell_recomputed_from_predictions(self):
    test_labels = data.get_dataset(self.config.data).y_test
    self.assertEqual(set(self.results["methods"]), set(EXPECTED))
    for name, entry in self.results["methods"].items():
      pred = self._load(name)
      members = pred.get("members")
      deployed = pred["deployed"]
      # The deployed models follow from the members by the method's rule, not the file's.
      if EXPECTED[name]["num_members"] == 1:
        self.assertNotIn("members", pred)
      else:
        self.assertEqual(members.shape[:2], (3, EXPECTED[name]["num_members"]))
        rule = members[:, 0] if EXPECTED[name]["prediction"] == "member0" \
            else members.astype(np.float64).mean(1)
        np.testing.assert_allclose(deployed, rule, atol=1e-7, err_msg=name)
      np.testing.assert_array_equal(pred["labels"], test_labels)
      np.testing.assert_array_equal(pred["example_ids"], np.arange(len(test_labels)))
      np.testing.assert_array_equal(pred["run_ids"], [0, 1, 2])
      want = recompute(name, deployed.astype(np.float64), test_labels)
      for key, value in entry.items():
        where = f"{name}.{key}"
        if key == "fingerprint":
          self.assertRegex(value, r"^[0-9a-f]{16}$", where)
        elif key == "predictions":
          self.assertEqual(value["path"], f"predictions/{name}.npz", where)
          with open(os.path.join(self.workdir, value["path"]), "rb") as f:
            self.assertEqual(value["sha256"], hashlib.sha256(f.read()).hexdigest(), where)
        elif key in PER_RUN or key in PAIRWISE:
          assert_summary_close(self, value, want[key], where)
        elif key in want:
          self.assertEqual(value, want[key], where)
        else:
          self.fail(f"{where}: results.json has a key this test cannot recompute; add its "
                    f"independent definition here")
      for key in list(PER_RUN) + list(PAIRWISE):
        if key != "brier":  # Added to evaluate.summarize by a later change.
          self.assertIn(key, entry, f"{name}: {key} missing from results.json")

  def test_eval_during_training_ends_at_the_reported_churn_and_leaves_results_unchanged(self):
    for name, entry in self.results["methods"].items():
      records = observer.read_curves(observer.curves_path(self.workdir, name))
      evals = [r for r in records if r["kind"] == "eval"]
      self.assertEqual([r["step"] for r in evals], [2, 4])
      np.testing.assert_allclose(evals[-1]["pairs"]["churn"], entry["churn"]["values"],
                                 atol=TOL)
      np.testing.assert_allclose(evals[-1]["runs"]["accuracy"], entry["accuracy"]["values"],
                                 atol=TOL)
      train_steps = [r["step"] for r in records if r["kind"] == "train"]
      self.assertEqual(train_steps, [2, 4])  # log_every_steps = 2
    # The same baseline trained without an observer (no evals) predicts bitwise the same.
    dataset = data.get_dataset(self.config.data)
    method = methods.build("baseline", self.config.method_configs["baseline"], 4)
    plain = train.train_method(self.config, dataset, method)
    np.testing.assert_array_equal(plain.member_probs[:, 0], self._load("baseline")["deployed"])

  def test_tensorboard_events_read_back(self):
    root = os.path.join(self.workdir, tensorboard.DIRNAME, "ensemble2")
    entry = self.results["methods"]["ensemble2"]
    for r in range(3):
      scalars = tensorboard.read_scalars(os.path.join(root, f"run{r}"))
      self.assertEqual([s for s, _ in scalars["train/loss"]], [2, 4])
      # lr: warm-up 2 steps to 0.1, x0.1 at step 4; the update of step t used lr(t - 1).
      np.testing.assert_allclose([v for _, v in scalars["train/learning_rate"]], [0.05, 0.1],
                                 rtol=1e-6)
      self.assertEqual(scalars["final/accuracy"][-1][0], 4)
      np.testing.assert_allclose(scalars["final/accuracy"][-1][1],
                                 entry["accuracy"]["values"][r], rtol=1e-6)
      self.assertIn("eval/accuracy", scalars)
    pairs = tensorboard.read_scalars(os.path.join(root, "pairs"))
    np.testing.assert_allclose(pairs["final/churn"][-1][1], entry["churn"]["mean"], rtol=1e-6)
    self.assertEqual([s for s, _ in pairs["eval/churn"]], [2, 4])

  def test_plots_with_csv_and_report_regenerates_tables(self):
    plots_dir = os.path.join(self.workdir, "plots")
    stems = ("accuracy_vs_churn", "reliability", "training_curves", "eval_curves")
    self.assertEqual(self.study_plots, sorted(f"{s}.{e}" for s in stems for e in ("csv", "png")))
    for stem in stems:
      with open(os.path.join(plots_dir, f"{stem}.png"), "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", stem)
      self.assertTrue(os.path.exists(os.path.join(plots_dir, f"{stem}.csv")), stem)
    with open(os.path.join(plots_dir, "accuracy_vs_churn.csv")) as f:
      rows = [line.split(",") for line in f.read().strip().splitlines()]
    acc = {r[0]: float(r[3]) for r in rows[1:]}
    for name, entry in self.results["methods"].items():
      self.assertAlmostEqual(acc[name], entry["accuracy"]["mean"], places=12)
    tables = {}
    for ext in ("md", "csv", "tex"):
      with open(os.path.join(self.workdir, f"results.{ext}")) as f:
        tables[ext] = f.read()
      os.remove(os.path.join(self.workdir, f"results.{ext}"))
    _, warnings = regenerate.regenerate(self.workdir)
    self.assertEqual(warnings, [])
    self.assertEqual(cli.main(["report", self.workdir]), 0)  # The same through the command.
    for ext in ("md", "csv", "tex"):
      with open(os.path.join(self.workdir, f"results.{ext}")) as f:
        self.assertEqual(f.read(), tables[ext], ext)

  def test_differences_against_baseline_recomputed(self):
    """differences.csv: Δ = method − baseline of the numpy means, a verdict that follows its
    interval, one row per method; rewritten identically by `churn-jax report`."""
    import csv  # pylint: disable=g-import-not-at-top
    test_labels = data.get_dataset(self.config.data).y_test
    want = {name: recompute(name, self._load(name)["deployed"].astype(np.float64), test_labels)
            for name in EXPECTED}
    path = os.path.join(self.workdir, "differences.csv")
    with open(path) as f:
      first = f.read()
    with open(path) as f:
      rows = {r["method"]: r for r in csv.DictReader(f)}
    self.assertEqual(set(rows), set(EXPECTED))
    self.assertEqual(rows["baseline"]["d_churn_diff"], "")
    for name in ("codistill", "ensemble2"):
      for key, lower_is_better in (("churn", True), ("accuracy", False)):
        r = {s: rows[name][f"d_{key}_{s}"]
             for s in ("diff", "low", "high", "verdict", "p_value", "p_holm")}
        diff = want[name][key]["mean"] - want["baseline"][key]["mean"]
        self.assertAlmostEqual(float(r["diff"]), diff, delta=TOL, msg=f"{name} {key}")
        low, high = float(r["low"]), float(r["high"])
        self.assertLessEqual(low, high)
        # The unadjusted p is below 5% exactly when the 95% interval excludes 0; the verdict
        # follows the Holm-adjusted p (churn_jax/protocol/stats.py).
        self.assertEqual(float(r["p_value"]) < 0.05, low > 0 or high < 0, f"{name} {key}")
        self.assertGreaterEqual(float(r["p_holm"]), float(r["p_value"]))
        significant = float(r["p_holm"]) < 0.05
        better = (diff < 0) == lower_is_better
        self.assertEqual(r["verdict"], "cannot tell" if not significant else "held" if better
                         else "reversed", f"{name} {key}")
    os.remove(path)
    self.assertEqual(cli.main(["report", self.workdir]), 0)
    with open(path) as f:
      self.assertEqual(f.read(), first)
    # Against another method: Δ = codistill − ensemble2.
    self.assertEqual(cli.main(["report", self.workdir, "--against", "ensemble2"]), 0)
    with open(os.path.join(self.workdir, "differences_vs_ensemble2.csv")) as f:
      rows = {r["method"]: r for r in csv.DictReader(f)}
    self.assertEqual(rows["ensemble2"]["d_churn_diff"], "")
    self.assertAlmostEqual(float(rows["codistill"]["d_churn_diff"]),
                           want["codistill"]["churn"]["mean"] - want["ensemble2"]["churn"]["mean"],
                           delta=TOL)
    before = sorted(os.listdir(self.workdir))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      self.assertEqual(cli.main(["report", self.workdir, "--against", "nosuch"]), 1)
    self.assertRegex(err.getvalue(), r"^error: --against: no method 'nosuch' in .*\n$")
    self.assertEqual(sorted(os.listdir(self.workdir)), before)

  def test_reuse_refuses_changed_predictions(self):
    workdir = os.path.join(self.tmp, "reuse")
    shutil.copytree(self.workdir, workdir)
    path = os.path.join(workdir, "predictions", "codistill.npz")
    with open(path, "r+b") as f:
      f.seek(-5, os.SEEK_END)
      f.write(b"xxxxx")
    with self.assertRaisesRegex(ValueError, r"predictions of finished method 'codistill' "
                                            r"changed since results.json was written"):
      train.train_and_evaluate(self.config, workdir)
    os.remove(path)
    with self.assertRaisesRegex(ValueError, "predictions of finished method 'codistill' are "
                                            "missing"):
      train.train_and_evaluate(self.config, workdir)


if __name__ == "__main__":
  absltest.main()
