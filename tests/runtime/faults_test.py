"""Faults injected on purpose: nothing is lost, and a study that completes is byte-identical.

The study-level faults (SIGTERM, SIGINT, a second process, a killed lock holder, changed data,
each bad input) go through the command line on a few-hundred-row npz, against one shared
uninterrupted reference run. Damaged checkpoints: tests/runtime/checkpoint_faults_test.py.
"""

import contextlib
import glob
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from unittest import mock

from absl.testing import absltest, parameterized
import jax
import numpy as np

from churn_jax.cli import app
from churn_jax.runtime import workdir_lock
from experiments import mnist1d
from tests import testing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(path):
  with open(path, "rb") as f:
    return f.read()


# ---------------------------------------------------------------------------------------------
# The study through the command line.

def _write_npz(path, seed=0, n_train=240, n_test=80, label=None):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(10, 40)) * 0.25  # Overlapping classes: runs disagree.
  def split(n):
    y = np.arange(n) % 10
    return (centers[y] + rng.normal(size=(n, 40))).astype(np.float32), y.astype(np.int64)
  x_train, y_train = split(n_train)
  x_test, y_test = split(n_test)
  if label is not None:
    y_train[0] = label
  np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


STUDY = ["--config=experiments/mnist1d.py:quick", "--config.methods=baseline,codistill",
         "--config.num_runs=2", "--config.num_train_steps=160", "--config.lr.decay_steps=(100,)",
         "--config.checkpoint_every_steps=50", "--config.batch_size=20",
         "--config.eval_batch_size=80", "--config.model.hidden=(16,)",
         "--config.log_every_steps=50", "--config.progress=False", "--config.plots=False"]


def study_config(tmp):
  """STUDY's config, built in this process."""
  config = mnist1d.get_config("quick")
  config.methods = "baseline,codistill"
  config.num_runs = 2
  config.num_train_steps = 160
  config.lr.decay_steps = (100,)
  config.checkpoint_every_steps = 50
  config.batch_size = 20
  config.eval_batch_size = 80
  config.model.hidden = (16,)
  config.log_every_steps = 50
  config.progress = False
  config.plots = False
  config.data.npz_path = f"{tmp}/data.npz"
  config.compile_cache_dir = ""  # Do not turn JAX's cache on in the test process.
  return config


def cli(tmp, workdir, *flags, umask=None, config=None, fault=None):
  """Starts launch/main.py; output goes to a file (a pipe nobody reads would block it).
  `fault`: injected by tests/runtime/fault_main.py (CHURN_JAX_TEST_FAULT) at a known step."""
  env = dict(os.environ, PYTHONPATH=ROOT, CHURN_JAX_CACHE=tmp,
             # Compiled once by the reference run, reused by the others (same executables).
             JAX_COMPILATION_CACHE_DIR=f"{tmp}/jax_cache",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  env.pop("CHURN_JAX_TEST_FAULT", None)
  if fault:
    env["CHURN_JAX_TEST_FAULT"] = fault
  log = tempfile.NamedTemporaryFile("w+", dir=tmp, suffix=".log", delete=False)
  args = STUDY if config is None else config
  main = "tests/runtime/fault_main.py" if fault else "launch/main.py"
  proc = subprocess.Popen(
      [sys.executable, main, f"--workdir={workdir}", *args,
       f"--config.data.npz_path={tmp}/data.npz", *flags],
      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
      preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
  proc.log_path = log.name
  return proc


finish = testing.finish


def error_lines(output):
  return [l for l in output.splitlines() if not re.match(r"[IWE]\d{4} ", l) and l.strip()]


class StudyFaultTest(parameterized.TestCase):
  """One uninterrupted reference study, shared; every fault is compared with it."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    _write_npz(f"{cls.tmp}/data.npz")
    cls.ref = f"{cls.tmp}/ref"
    proc = cli(cls.tmp, cls.ref, umask=0o027)
    cls.ref_output = finish(proc)
    assert proc.returncode == 0, cls.ref_output[-3000:]

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp)
    super().tearDownClass()

  def assert_same_results(self, workdir):
    for name in ("results.json", "results.csv", "results.md"):
      self.assertEqual(read(f"{self.ref}/{name}"), read(f"{workdir}/{name}"), name)

  def test_results_record_data_environment_and_respect_umask(self):
    results = json.loads(read(f"{self.ref}/results.json"))
    npz = f"{self.tmp}/data.npz"
    self.assertEqual(results["data"]["source"], "npz")
    self.assertEqual(results["data"]["sha256"], hashlib.sha256(read(npz)).hexdigest())
    self.assertEqual(results["data"]["name"], "data")
    env = results["environment"]
    for package in ("jax", "jaxlib", "flax", "optax"):
      self.assertEqual(env["versions"][package], metadata.version(package))
    self.assertEqual(env["backend"], "cpu")
    self.assertEqual(env["device_count"], jax.device_count())
    self.assertEqual(env["device_kind"], jax.devices()[0].device_kind)
    # The reference ran under umask 027: files are 0640, as open() would have made them.
    for name in ("results.json", "results.csv", "results.md", "timings.json", "config.json"):
      self.assertEqual(os.stat(f"{self.ref}/{name}").st_mode & 0o777, 0o640, name)
    config = json.loads(read(f"{self.ref}/config.json"))
    self.assertEqual((config["num_runs"], config["model"]["hidden"]), (2, [16]))
    # The overrides reach the table printed at the end (was tests/study/train_test.py's
    # CliTest, a study of its own).
    self.assertIn("| baseline | 2 | 1x | 1x |", self.ref_output)
    self.assertIn("| codistill | 2 | 2x | 1x |", self.ref_output)
    (written,) = [l for l in self.ref_output.splitlines() if l.startswith("written in ")]
    self.assertTrue(written.startswith(f"written in {self.ref}: results.{{json,csv,md,tex}}"))
    self.assertNotIn("plots/", written)  # --config.plots=False: none drawn, none listed.
    self.assertFalse(os.path.exists(f"{self.ref}/plots"))

  def test_sigterm_then_sigint_then_sigkill_then_rerun_is_bitwise_identical(self):
    # Each signal is sent by the study to itself at a known checkpoint (fault_main.py), so it
    # lands mid-method however fast the machine (polling for a checkpoint from here needed a
    # 600-step study to stay ahead of it).
    workdir = f"{self.tmp}/signals"
    for fault, method, code in (("sigterm@baseline:50", "baseline", 143),
                                ("sigint@codistill:50", "codistill", 130)):
      proc = cli(self.tmp, workdir, fault=fault)
      output = finish(proc)
      self.assertIn(f"fault_main: signal {int(getattr(signal, fault.split('@')[0].upper()))} "
                    f"to this process at step 50", output)
      self.assertEqual(proc.returncode, code, output[-2000:])
      self.assertNotIn("Traceback", output)
      last = error_lines(output)[-1]
      match = re.fullmatch(rf"stopped at step (\d+) of {method}, checkpoint saved; run the "
                           r"same command to resume", last)
      self.assertIsNotNone(match, last)
      step = int(match.group(1))
      self.assertTrue(glob.glob(f"{workdir}/checkpoints/{method}-*/{step}"), step)
      self.assertBetween(step, 50, 99)  # Stopped mid-method, right after the signal.
    # SIGKILL (no handler runs) once the resumed codistill has saved past the SIGINT step
    # (was tests/runtime/resume_test.py's KillResumeTest, with its own uninterrupted study).
    proc = cli(self.tmp, workdir, fault="sigkill@codistill:100")
    output = finish(proc)
    self.assertEqual(proc.returncode, -signal.SIGKILL, output[-2000:])
    self.assertIn(f"resumed from step {step}", output)
    self.assertEqual(list(json.loads(read(f"{workdir}/results.json"))["methods"]),
                     ["baseline"])  # Finished before the kill.
    timings_before = json.loads(read(f"{workdir}/timings.json"))
    proc = cli(self.tmp, workdir)
    output = finish(proc)
    self.assertEqual(proc.returncode, 0, output[-2000:])
    self.assertIn("resumed from step", output)
    self.assertIn("baseline: finished earlier, results reused", output)
    self.assert_same_results(workdir)
    # The baseline was not trained again.
    self.assertEqual(timings_before["baseline"],
                     json.loads(read(f"{workdir}/timings.json"))["baseline"])

  def test_second_process_is_refused_naming_the_holder(self):
    workdir = f"{self.tmp}/locked"
    shutil.copytree(self.ref, workdir)
    before = {p: read(f"{workdir}/{p}") for p in ("results.json", "timings.json")}
    with workdir_lock.WorkdirLock(workdir):
      proc = cli(self.tmp, workdir, "--config.methods=baseline")
      output = finish(proc)
    self.assertEqual(proc.returncode, 1)
    self.assertEqual(error_lines(output), [
        f"error: workdir {workdir} is in use by another study (pid {os.getpid()} on host "
        f"{socket.gethostname()}); wait for it to finish or use another --workdir"])
    self.assertEqual(before, {p: read(f"{workdir}/{p}") for p in before})

  def test_killed_holder_leaves_no_stale_lock(self):
    workdir = f"{self.tmp}/stale"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from churn_jax.runtime import workdir_lock; "
         "workdir_lock.WorkdirLock(sys.argv[1]).acquire(); print('held', flush=True); "
         "time.sleep(600)", workdir], env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.PIPE, text=True)
    try:
      self.assertEqual(holder.stdout.readline().strip(), "held")
      with self.assertRaisesRegex(workdir_lock.WorkdirBusyError, f"pid {holder.pid} on host"):
        workdir_lock.WorkdirLock(workdir).acquire()
    finally:
      holder.kill()  # SIGKILL: the kernel drops the flock.
      holder.wait()
      holder.stdout.close()
    with workdir_lock.WorkdirLock(workdir):
      pass

  def test_changed_npz_and_config_are_refused_naming_the_keys(self):
    workdir = f"{self.tmp}/changed"
    shutil.copytree(self.ref, workdir)
    npz = f"{self.tmp}/data.npz"
    original = read(npz)
    before = sorted(os.listdir(workdir)), read(f"{workdir}/results.json")
    try:
      _write_npz(npz, seed=1)  # Same path, other data.
      proc = cli(self.tmp, workdir, "--config.num_runs=3")
      output = finish(proc)
    finally:
      with open(npz, "wb") as f:
        f.write(original)
    self.assertEqual(proc.returncode, 1)
    (line,) = error_lines(output)
    self.assertIn("already holds results for method 'baseline'", line)
    self.assertIn("num_runs: 2 != 3", line)
    self.assertIn("data.sha256 differs", line)
    self.assertEqual(before, (sorted(os.listdir(workdir)), read(f"{workdir}/results.json")))

  @parameterized.named_parameters(
      # Through a process each: parse-time errors (no jax import, a fraction of a second),
      # one validation error, one data error and an empty workdir. The other study-time
      # errors go through the same main() in this process (test_bad_input_in_process).
      ("lr_nan", ["--config.lr.base=nan"], "lr.base = nan is not a finite number"),
      ("syntax_error", ["--config={tmp}/broken.py"], "syntax error in"),
      ("unknown_argument", ["--config=experiments/mnist1d.py:quik"],
       "unknown config argument 'quik'; known: all, quick, runs, small"),
      ("typo_key", ["--config.num_runz=3"], "did you mean 'num_runs'?"),
      ("value_on_float", ["--config.method_configs.entropy.beta.value=0.3"],
       "config.method_configs.entropy.beta is a plain float (0.1), it has no key 'value'"),
      ("label_1000", ["--config.data.npz_path={tmp}/label1000.npz"],
       "the max label is 1000 and 990 of those 1001 classes have no training example"),
      ("workdir_empty", ["--workdir="], "--workdir is empty"),
  )
  def test_bad_input_is_one_line_exit_1_and_nothing_written(self, flags, message):
    tmp = self.tmp
    with open(f"{tmp}/broken.py", "w") as f:
      f.write("def get_config(:\n  pass\n")
    _write_npz(f"{tmp}/label1000.npz", label=1000)
    with open(f"{tmp}/notzip.npz", "wb") as f:
      f.write(b"\x80\x04K\x01.")  # A pickle, which np.load would try to unpickle.
    listing = sorted(os.listdir(tmp))
    workdir = f"{tmp}/never"
    flags = [f.format(tmp=tmp) for f in flags]
    proc = cli(tmp, workdir, *flags)
    output = finish(proc)
    self.assertEqual(proc.returncode, 1, output[-2000:])
    self.assertNotIn("Traceback", output)
    lines = error_lines(output)
    self.assertLen(lines, 1, output[-2000:])
    self.assertTrue(lines[0].startswith("error: "), lines[0])
    self.assertIn(message, lines[0])
    self.assertFalse(os.path.exists(workdir))
    self.assertEqual(sorted(os.listdir(tmp)), sorted(listing + [os.path.basename(proc.log_path)]))

  @parameterized.named_parameters(
      # (On the command line the study's own hidden=(16,) comes first: (16, 0).)
      ("hidden_zero", {"model.hidden": (16, 0)}, "] = 0 must be >= 1"),
      ("hidden_negative", {"model.hidden": (16, -5)}, "] = -5 must be >= 1"),
      ("beta_inf", {"method_configs.codistill.beta.value": float("inf")},
       "method_configs.codistill.beta.value = inf is not a finite number"),
      ("alpha_nan", {"schurn_alpha": float("nan")}, "schurn_alpha = nan is not a finite number"),
      ("npz_directory", {"data.npz_path": "{tmp}"}, "npz path is a directory"),
      ("npz_not_zip", {"data.npz_path": "{tmp}/notzip.npz"}, "not a zip archive"),
      ("workdir_file", {"workdir": "{tmp}/data.npz"}, "is a file, not a directory"),
      ("workdir_sys", {"workdir": "/sys/churn"}, "is under /sys, a system directory"),
      ("workdir_gs", {"workdir": "gs://some-bucket/churn"}, "writing to gs:// needs gcsfs"),
  )
  def test_bad_input_in_process(self, overrides, message):
    """churn_jax.cli.app.main, what the command runs after parsing, without a process each
    (each would import jax: seconds of CPU); the process wiring is checked above."""
    tmp = self.tmp
    with open(f"{tmp}/notzip.npz", "wb") as f:
      f.write(b"\x80\x04K\x01.")
    listing = sorted(os.listdir(tmp))
    overrides = {k: v.format(tmp=tmp) if isinstance(v, str) else v for k, v in overrides.items()}
    workdir = overrides.pop("workdir", f"{tmp}/never")
    config = study_config(tmp)
    config.update_from_flattened_dict(overrides)
    err = io.StringIO()
    find_spec = importlib.util.find_spec
    # gs:// without gcsfs or tensorflow, whether or not this machine has them.
    hide = lambda name, *a: None if name in ("gcsfs", "tensorflow") else find_spec(name, *a)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
         mock.patch("importlib.util.find_spec", side_effect=hide):
      code = app.main(config, workdir)
    self.assertEqual(code, 1, err.getvalue())
    lines = err.getvalue().splitlines()
    self.assertLen(lines, 1, err.getvalue())
    self.assertTrue(lines[0].startswith("error: "), lines[0])
    self.assertIn(message, lines[0])
    self.assertFalse(os.path.exists(f"{tmp}/never"))
    self.assertEqual(sorted(os.listdir(tmp)), listing)


if __name__ == "__main__":
  absltest.main()
