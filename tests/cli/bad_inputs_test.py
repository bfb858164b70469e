"""Every bad input of issue 28 fed to every entry point it applies to: one line on stderr
starting with 'error:', exit 1, nothing written; `--help` exits 0.

The launch scripts and `churn-jax train` run as processes (their exit status and an untouched
directory are the property), all at once, and fail before JAX is imported (about a Python
start-up each); `churn-jax compare` runs in this process.
"""

import concurrent.futures
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax.cli import command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = "--config=experiments/mnist1d.py:quick"

# (name, argv after the program, expected text of the one error line); {t} is the temp dir.
_STUDY_CASES = [
    ("no_arguments", [], "--config is required"),
    ("syntax_error", ["--config={t}/broken.py", "--workdir={t}/w"], "syntax error in"),
    ("missing_config", ["--config={t}/missing.py", "--workdir={t}/w"], "not found"),
    ("typo_key", [QUICK, "--workdir={t}/w", "--config.num_runz=2"], "did you mean 'num_runs'"),
    ("seed_negative", [QUICK, "--workdir={t}/w", "--config.seed=-1"], "seed must be >= 0"),
    ("methods_twice", [QUICK, "--workdir={t}/w", "--config.methods=baseline,baseline"],
     "names 'baseline' more than once"),
    ("keep_zero", [QUICK, "--workdir={t}/w", "--config.checkpoints_to_keep=0"],
     "checkpoints_to_keep must be >= 1"),
    ("log_zero", [QUICK, "--workdir={t}/w", "--config.log_every_steps=0"],
     "log_every_steps must be >= 1"),
    ("warmup", [QUICK, "--workdir={t}/w", "--config.lr.warmup_steps=-5"], "lr.warmup_steps"),
    ("momentum", [QUICK, "--workdir={t}/w", "--config.optimizer.momentum=2.0"],
     "optimizer.momentum"),
    ("weight_decay", [QUICK, "--workdir={t}/w", "--config.optimizer.weight_decay=-1.0"],
     "optimizer.weight_decay"),
    ("eval_every", [QUICK, "--workdir={t}/w", "--config.eval_every_steps=-1"],
     "eval_every_steps"),
    ("hidden_abc", [QUICK, "--workdir={t}/w", "--config.model.hidden=abc"], "model.hidden"),
    ("workdir_file", [QUICK, "--workdir={t}/afile"], "is a file"),
    ("unknown_flag", [QUICK, "--workdir={t}/w", "--bogus=1"], "unknown flag --bogus"),
]
_SWEEP_CASES = [
    ("no_arguments", [], "--config is required"),
    ("syntax_error", ["--config={t}/broken.py", "--workdir={t}/w"], "syntax error in"),
    ("missing_config", ["--config={t}/missing.py", "--workdir={t}/w"], "not found"),
    ("config_raises", ["--config={t}/raises.py", "--workdir={t}/w"],
     "RuntimeError: boom in get_config"),
    ("workdir_file", [QUICK, "--workdir={t}/afile"], "is a file"),
    ("only_bogus", [QUICK, "--workdir={t}/w", "--only=bogus"], "no sweep entry 'bogus'"),
    ("mode_bogus", [QUICK, "--workdir={t}/w", "--mode=bogus"], "--mode=bogus"),
    ("unknown_flag", [QUICK, "--workdir={t}/w", "--bogus=1"], "unknown flag --bogus"),
]
# main.py takes every case; the others share its parser and checks (churn_jax/cli/app.py,
# study/config_checks.py), so they take the cases that reach their own handling.
_SHARED = ("no_arguments", "syntax_error", "missing_config", "typo_key", "seed_negative",
           "hidden_abc", "workdir_file")
_TABLE1_CASES = [c for c in _STUDY_CASES if c[0] in _SHARED] + [
    ("method_bogus", [QUICK, "--workdir={t}/w", "--method=bogus"], "unknown method 'bogus'")]
_TRAIN_CASES = [c for c in _STUDY_CASES if c[0] in ("no_arguments", "typo_key", "seed_negative")]
_ABLATION_CASES = [c for c in _STUDY_CASES if c[0] in ("no_arguments", "unknown_flag")] + [
    ("missing_config", ["--config={t}/missing.py", "--workdir={t}/w", "--study=topk"],
     "No such file or directory"),
    ("no_study", [QUICK, "--workdir={t}/w"], "--study is required"),
    ("study_bogus", [QUICK, "--workdir={t}/w", "--study=bogus"], "unknown study 'bogus'"),
    ("compare_to_missing", [QUICK, "--workdir={t}/w", "--study=topk", "--compare_to={t}/nope"],
     "is not a finished topk study: ")]

ENTRY_POINTS = {
    "main.py": ([sys.executable, "launch/main.py"], _STUDY_CASES),
    "churn-jax train": ([sys.executable, "-m", "churn_jax.cli", "train"], _TRAIN_CASES),
    "sweep.py": ([sys.executable, "launch/sweep.py"], _SWEEP_CASES),
    "table1.py": ([sys.executable, "launch/table1.py"], _TABLE1_CASES),
    "ablations.py": ([sys.executable, "launch/ablations.py"], _ABLATION_CASES),
}


def _run(program, argv):
  return subprocess.run(program + argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                        capture_output=True, text=True, timeout=300)


class BadInputTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp()
    with open(f"{self.tmp}/broken.py", "w") as f:
      f.write("def get_config(:\n  pass\n")
    with open(f"{self.tmp}/raises.py", "w") as f:
      f.write("def get_config(arg=None):\n  raise RuntimeError('boom in get_config')\n"
              "def get_sweep(arg=None):\n  return []\n")
    with open(f"{self.tmp}/afile", "w") as f:
      f.write("x")

  def tearDown(self):
    shutil.rmtree(self.tmp, ignore_errors=True)
    super().tearDown()

  def test_every_entry_point_every_input(self):
    jobs = [(entry, program, name, [a.format(t=self.tmp) for a in argv], message)
            for entry, (program, cases) in ENTRY_POINTS.items()
            for name, argv, message in cases]
    listing = sorted(os.listdir(self.tmp))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      procs = list(pool.map(lambda j: _run(j[1], j[3]), jobs))
    for (entry, _, name, _, message), proc in zip(jobs, procs):
      with self.subTest(f"{entry} {name}"):
        output = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 1, output[-1500:])
        self.assertEqual(proc.stdout, "")
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        self.assertLen(lines, 1, output[-1500:])  # No absl INFO lines, no traceback.
        self.assertTrue(lines[0].startswith("error: "), lines[0])
        self.assertIn(message, lines[0])
    self.assertEqual(sorted(os.listdir(self.tmp)), listing)  # Nothing written.

  def test_help_exits_0(self):
    jobs = [(entry, program) for entry, (program, _) in ENTRY_POINTS.items()]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      procs = list(pool.map(lambda j: _run(j[1], ["--help"]), jobs))
    for (entry, _), proc in zip(jobs, procs):
      with self.subTest(entry):
        self.assertEqual(proc.returncode, 0, proc.stderr[-1500:])
        self.assertIn("--workdir", proc.stdout)
        self.assertEqual(proc.stderr, "")
    self.assertIn("usage: churn-jax train", procs[1].stdout)


class CompareBadInputTest(absltest.TestCase):
  """`churn-jax compare`, in this process."""

  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp()
    t = self.tmp
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=20)
    np.save(f"{t}/p.npy", probs)
    np.save(f"{t}/k1.npy", np.zeros(20))  # Predicted classes, all 0: K = 1.
    open(f"{t}/empty.npy", "w").close()
    open(f"{t}/empty.npz", "w").close()
    open(f"{t}/labels_empty.csv", "w").close()
    with open(f"{t}/text.npz", "w") as f:
      f.write("not a zip\n")

  def tearDown(self):
    shutil.rmtree(self.tmp, ignore_errors=True)
    super().tearDown()

  def test_one_line_exit_1(self):
    t = self.tmp
    cases = [
        ("zero_byte_npy", [f"{t}/empty.npy", f"{t}/p.npy"], "A: cannot read"),
        ("zero_byte_npz", [f"{t}/empty.npz", f"{t}/p.npy"], "A: cannot read"),
        ("text_npz", [f"{t}/p.npy", f"{t}/text.npz"], "B: cannot read"),
        ("labels_empty", [f"{t}/p.npy", f"{t}/p.npy", f"--labels={t}/labels_empty.csv"],
         "holds no labels"),
        ("alpha_nan", [f"{t}/p.npy", f"{t}/p.npy", "--alpha=nan"], "--alpha must be a finite"),
        ("alpha_inf", [f"{t}/p.npy", f"{t}/p.npy", "--alpha=inf"], "--alpha must be a finite"),
        ("logits_on_probs", [f"{t}/p.npy", f"{t}/p.npy", "--logits"], "drop --logits"),
        ("one_class", [f"{t}/k1.npy", f"{t}/k1.npy"], "at least 2 classes"),
        ("missing", [f"{t}/nope.npy", f"{t}/p.npy"], "does not exist"),
    ]
    listing = sorted(os.listdir(t))
    for name, argv, message in cases:
      with self.subTest(name):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
          code = command.main(["compare", *argv])
        self.assertEqual(code, 1)
        self.assertEqual(out.getvalue(), "")
        lines = err.getvalue().strip().splitlines()
        self.assertLen(lines, 1)
        self.assertTrue(re.match("error: ", lines[0]), lines[0])
        self.assertIn(message, lines[0])
    self.assertEqual(sorted(os.listdir(t)), listing)

  def test_missing_run_lists_plain_numbers(self):
    from churn_jax.outputs import predictions  # pylint: disable=g-import-not-at-top
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=(2, 20)).astype(np.float32)
    info = predictions.save(self.tmp, "baseline", probs, None, np.arange(20) % 3, range(2),
                            "member0")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
      code = command.main(["compare", os.path.join(self.tmp, info["path"]),
                           f"{self.tmp}/p.npy", "--run=5"])
    self.assertEqual(code, 1)
    self.assertIn("(runs [0, 1])", err.getvalue())

  def test_good_input_still_works(self):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      self.assertEqual(command.main(["compare", f"{self.tmp}/p.npy", f"{self.tmp}/p.npy",
                                     "--format=json"]), 0)
    self.assertIn('"churn"', out.getvalue())


if __name__ == "__main__":
  absltest.main()
