"""`churn-jax compare`: hand-made cases, numpy references, inputs of every origin, bad input."""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax.cli import command as cli
from churn_jax.outputs import compare, predictions


def run_cli(*argv):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      rc = cli.main(list(argv))
    except SystemExit as e:
      rc = e.code
  return rc, out.getvalue(), err.getvalue()


def hand_made():
  """6 examples, 3 classes. A predicts 0 0 1 1 2 2; B predicts 0 1 1 2 2 0: 3 flips."""
  a = np.array([[.9, .05, .05], [.6, .3, .1], [.1, .8, .1], [.2, .7, .1], [.1, .1, .8],
                [.3, .3, .4]])
  b = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .2, .7], [.1, .1, .8],
                [.95, .03, .02]])
  labels = np.array([0, 0, 1, 2, 2, 0])
  return a, b, labels


class CompareTest(absltest.TestCase):

  def test_hand_made_pair(self):
    a, b, labels = hand_made()
    r = compare.compare(compare.model_from_array(a, "A"), compare.model_from_array(b, "B"),
                        labels, top=10)
    self.assertEqual(r["flips"], 3)
    self.assertAlmostEqual(r["churn"], 0.5)
    self.assertAlmostEqual(r["accuracy_a"], 4 / 6)  # right: 0, 1, 2, 4
    self.assertAlmostEqual(r["accuracy_b"], 5 / 6)  # right: 0, 2, 3, 4, 5
    # A right on {0, 1, 2, 4}: flip 1 -> 1/4; B right on {0, 2, 3, 4, 5}: flips 3, 5 -> 2/5.
    self.assertAlmostEqual(r["churn_correct"], (1 / 4 + 2 / 5) / 2)
    # A wrong on {3, 5}, B wrong on {1}: all flip.
    self.assertAlmostEqual(r["churn_incorrect"], 1.0)
    self.assertAlmostEqual(r["accuracy_b_minus_a"], 1 / 6)
    self.assertAlmostEqual(r["pred_diff_l1"], np.abs(a - b).sum(1).mean())
    na, nb = a / a.max(1, keepdims=True), b / b.max(1, keepdims=True)
    self.assertAlmostEqual(r["schurn"], 0.5 * np.abs(na - nb).sum(1).mean(), places=6)
    per_class = {c["class"]: (c["examples"], c["churn"]) for c in r["per_class"]}
    self.assertEqual(per_class, {0: (3, 2 / 3), 1: (1, 0.0), 2: (2, 0.5)})
    flips = {(f["class_a"], f["class_b"]): f["count"] for f in r["flip_matrix_top"]}
    self.assertEqual(flips, {(0, 1): 1, (1, 2): 1, (2, 0): 1})
    # Most confident: min(conf A, conf B): ex 3 min(.7,.7)=.7, ex 1 .6, ex 5 .4.
    self.assertEqual([f["example"] for f in r["most_confident_flips"]], [3, 1, 5])
    self.assertEqual(r["most_confident_flips"][0]["confidence_b"], 0.7)

  def test_bootstrap_interval_matches_resampling_examples(self):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, 300)
    b = np.where(rng.random(300) < 0.2, rng.integers(0, 4, 300), a)
    r = compare.compare(compare.model_from_array(a, "A"), compare.model_from_array(b, "B"),
                        bootstrap=4000)
    differ = a != b
    idx = np.random.default_rng(2).integers(0, 300, (4000, 300))
    explicit = differ[idx].mean(1)
    lo, hi = r["churn_ci95"]
    self.assertLess(lo, r["churn"])
    self.assertGreater(hi, r["churn"])
    self.assertAlmostEqual(lo, np.percentile(explicit, 2.5), delta=0.01)
    self.assertAlmostEqual(hi, np.percentile(explicit, 97.5), delta=0.01)

  def test_inputs_of_every_origin_agree(self):
    a, b, labels = hand_made()
    with tempfile.TemporaryDirectory() as tmp:
      np.save(f"{tmp}/a.npy", a)
      logits = np.log(b) + 3.0  # softmax(log b + c) = b
      np.savez(f"{tmp}/b_logits.npz", logits=logits, other=np.zeros(2))
      with open(f"{tmp}/b_classes.csv", "w") as f:
        f.write("pred\n" + "\n".join(str(c) for c in b.argmax(1)) + "\n")
      np.savetxt(f"{tmp}/labels.csv", labels, fmt="%d")
      np.save(f"{tmp}/a_logits.npy", np.log(a))  # --logits applies to both inputs.
      rc, out, err = run_cli("compare", f"{tmp}/a_logits.npy", f"{tmp}/b_logits.npz",
                             "--logits", "--labels", f"{tmp}/labels.csv", "--format", "json")
      self.assertEqual(rc, 0, err)
      from_logits = json.loads(out)
      self.assertAlmostEqual(from_logits["churn"], 0.5)
      self.assertAlmostEqual(from_logits["pred_diff_l1"], np.abs(a - b).sum(1).mean())
      rc, out, err = run_cli("compare", f"{tmp}/a.npy", f"{tmp}/b_classes.csv", "--labels",
                             f"{tmp}/labels.csv", "--format", "json")
      self.assertEqual(rc, 0, err)
      from_classes = json.loads(out)
      self.assertAlmostEqual(from_classes["churn"], 0.5)
      self.assertIsNone(from_classes["schurn"])  # Undefined for classes: n/a, not 0.
      # A study's predictions file and its workdir, runs 0 and 1.
      wd = f"{tmp}/wd"
      os.makedirs(wd)
      predictions.save(wd, "baseline", np.stack([a, b]), None, labels, [0, 1], "member0")
      rc, out, err = run_cli("compare", wd, wd, "--run", "0", "--run-b", "1", "--format",
                             "json")
      self.assertEqual(rc, 0, err)
      study = json.loads(out)
      self.assertAlmostEqual(study["churn"], 0.5)
      self.assertAlmostEqual(study["accuracy_b"], 5 / 6)  # The study's own labels.
      rc, out, _ = run_cli("compare", f"{wd}/predictions/baseline.npz", f"{tmp}/a.npy",
                           "--run", "1", "--format", "csv")
      self.assertEqual(rc, 0)
      self.assertIn("summary,churn,value,0.5", out)
      rc, out, _ = run_cli("compare", f"{tmp}/a.npy", f"{tmp}/b_classes.csv")
      self.assertEqual(rc, 0)
      self.assertIn("| churn | 50.00% (95% CI", out)
      self.assertIn("| SChurn (alpha 1) | n/a |", out)

  def test_bad_input_is_one_line_and_exit_1(self):
    a, b, labels = hand_made()
    with tempfile.TemporaryDirectory() as tmp:
      np.save(f"{tmp}/a.npy", a)
      np.save(f"{tmp}/logits.npy", np.log(b) + 3.0)
      np.save(f"{tmp}/short.npy", b[:5])
      np.save(f"{tmp}/k2.npy", np.full((6, 2), 0.5))
      nan = b.copy()
      nan[2, 1] = np.nan
      np.save(f"{tmp}/nan.npy", nan)
      np.save(f"{tmp}/labels_bad.npy", labels + 1)
      np.save(f"{tmp}/labels_short.npy", labels[:4])
      cases = [
          (("logits.npy",), "rows are not probabilities .* pass --logits"),
          (("short.npy",), "A has 6 examples but B has 5"),
          (("k2.npy",), "A has 3 classes but B has 2"),
          (("nan.npy",), "B: contains NaN"),
          (("a.npy", "--labels", f"{tmp}/labels_bad.npy"), "labels: value 3 is out of range"),
          (("a.npy", "--labels", f"{tmp}/labels_short.npy"), "labels have 4 entries"),
          (("missing.npy",), "B: .*missing.npy does not exist"),
          (("a.npy", "--format", "xml"), "invalid choice"),
      ]
      for (b_file, *extra), pattern in cases:
        rc, out, err = run_cli("compare", f"{tmp}/a.npy", f"{tmp}/{b_file}", *extra)
        self.assertEqual(rc, 1, (b_file, extra, err))
        self.assertEqual(out, "", b_file)
        self.assertLen(err.strip().splitlines(), 1, err)
        self.assertRegex(err, f"^error: .*{pattern}", b_file)

  def test_console_script_declared(self):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "setup.cfg")) as f:
      self.assertIn("churn-jax = churn_jax.cli.command:entry_point", f.read())
    rc, out, _ = run_cli("--help")
    self.assertEqual(rc, 0)
    self.assertIn("compare", out)
    self.assertEqual(run_cli("frobnicate")[0], 1)

  def test_train_subcommand_runs_the_launcher_and_refuses_a_typo(self):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory() as tmp:
      proc = subprocess.run(
          [sys.executable, "-m", "churn_jax.cli", "train",
           "--config=experiments/mnist1d.py:quick", f"--workdir={tmp}/wd",
           "--config.num_runz=2"], cwd=root, env=dict(os.environ, PYTHONPATH=root),
          capture_output=True, text=True, timeout=300)
      self.assertNotEqual(proc.returncode, 0)
      self.assertIn("num_runz", proc.stderr)
      self.assertFalse(os.path.exists(f"{tmp}/wd"))


if __name__ == "__main__":
  absltest.main()
