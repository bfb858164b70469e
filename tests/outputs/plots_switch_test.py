"""config.plots: False writes no plots/ and changes nothing else; `churn-jax report` draws them."""

import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest

from churn_jax.study import regenerate, train
from tests import testing

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Files a study writes whose bytes depend on the run's wall clock or on the config's own text.
_UNCOMPARED = ("config.json", "timings.json", ".lock")


def _files(workdir):
  """{relative path: bytes} of every file outside plots/, checkpoints/ and tensorboard/."""
  out = {}
  for folder, dirs, names in os.walk(workdir):
    rel = os.path.relpath(folder, workdir)
    if rel.split(os.sep)[0] in ("plots", "checkpoints", "tensorboard"):
      continue
    for name in names:
      if rel == "." and name in _UNCOMPARED:
        continue
      with open(os.path.join(folder, name), "rb") as f:
        out[os.path.normpath(os.path.join(rel, name))] = f.read()
  return out


class PlotsSwitchTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.workdirs = {}
    for plots in (True, False):
      config = testing.tiny_config(num_runs=2, num_steps=4, methods="baseline")
      config.eval_every_steps = 2  # Curves, so the curve plots have data too.
      config.compile_cache_dir = ""
      config.plots = plots
      cls.workdirs[plots] = os.path.join(cls._tmp.name, f"plots_{plots}")
      train.train_and_evaluate(config, cls.workdirs[plots])
    cls.config = config

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_off_writes_no_plots_and_every_other_file_is_byte_identical(self):
    on, off = self.workdirs[True], self.workdirs[False]
    self.assertTrue(os.path.exists(os.path.join(on, "plots", "accuracy_vs_churn.png")))
    self.assertFalse(os.path.exists(os.path.join(off, "plots")))
    on_files, off_files = _files(on), _files(off)
    for name in ("results.json", "results.md", "predictions/baseline.npz",
                 "curves/baseline.jsonl", "differences.md"):
      self.assertIn(name, on_files)
    self.assertEqual(sorted(on_files), sorted(off_files))
    for name, body in on_files.items():
      self.assertEqual(body, off_files[name], name)

  def test_rerun_with_the_other_value_reuses_results(self):
    with tempfile.TemporaryDirectory() as tmp:
      for plots in (True, False):
        workdir = os.path.join(tmp, str(plots))
        shutil.copytree(self.workdirs[plots], workdir)
        config = self.config.copy_and_resolve_references()
        if plots:
          config.plots = False
        else:  # Absent, as in a config saved before the field existed: on.
          del config["plots"]
        with mock.patch.object(train, "train_method",
                               side_effect=AssertionError("retrained instead of reused")):
          train.train_and_evaluate(config, workdir)
        if not plots:  # Switched on: the reused study draws its plots (off deletes none).
          self.assertTrue(os.path.exists(os.path.join(workdir, "plots", "reliability.png")))
        with open(os.path.join(workdir, "results.json"), "rb") as f, \
            open(os.path.join(self.workdirs[plots], "results.json"), "rb") as g:
          self.assertEqual(f.read(), g.read())

  def test_report_draws_the_plots_of_a_study_run_without_them(self):
    with tempfile.TemporaryDirectory() as tmp:
      workdir = os.path.join(tmp, "wd")
      shutil.copytree(self.workdirs[False], workdir)
      regenerate.regenerate(workdir)
      names = sorted(os.listdir(os.path.join(workdir, "plots")))
      self.assertEqual(names, sorted(os.listdir(os.path.join(self.workdirs[True], "plots"))))
      for name in names:
        if name.endswith(".csv"):  # The data drawn: the same as the study's own plots.
          with open(os.path.join(workdir, "plots", name)) as f, \
              open(os.path.join(self.workdirs[True], "plots", name)) as g:
            self.assertEqual(f.read(), g.read(), name)


class BadValueTest(absltest.TestCase):

  def test_a_non_bool_is_refused_by_the_launcher_with_one_line_and_nothing_written(self):
    with tempfile.TemporaryDirectory() as tmp:
      config_file = os.path.join(tmp, "bad_plots.py")
      with open(config_file, "w") as f:
        f.write("import importlib.util\n"
                f"spec = importlib.util.spec_from_file_location('d', "
                f"{os.path.join(_ROOT, 'experiments', 'digits.py')!r})\n"
                "digits = importlib.util.module_from_spec(spec)\n"
                "spec.loader.exec_module(digits)\n"
                "def get_config(arg=None):\n"
                "  config = digits.get_config(arg)\n"
                "  del config['plots']\n"
                "  config.plots = 'no'  # A string: 'no' would be true in a bool context.\n"
                "  return config\n")
      workdir = os.path.join(tmp, "wd")
      proc = subprocess.run(
          [sys.executable, os.path.join(_ROOT, "launch", "main.py"),
           f"--config={config_file}:quick", f"--workdir={workdir}"],
          env=dict(os.environ, PYTHONPATH=_ROOT), capture_output=True, text=True, timeout=300)
      self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
      self.assertEqual(proc.stderr.strip().splitlines(),
                       ["error: invalid config: plots must be True or False, got 'no'"])
      self.assertFalse(os.path.exists(workdir))


if __name__ == "__main__":
  absltest.main()
