"""results.json is derived from the predictions: a hand edit is refused on reuse and in
`churn-jax report`, and `report --repair` rewrites it from the predictions."""

import contextlib
import io
import json
import os
import shutil
import tempfile

from absl.testing import absltest

from churn_jax.cli import command
from churn_jax.study import train
from tests import testing


def _read(path):
  with open(path, "rb") as f:
    return f.read()


class DerivedResultsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    config = testing.tiny_config(num_runs=2, num_steps=2, methods="baseline")
    config.data.cache_dir = cls.tmp
    cls.config = config
    cls.ref = os.path.join(cls.tmp, "ref")
    train.train_and_evaluate(config, cls.ref)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def _edited(self, name):
    """A copy of the reference workdir whose baseline churn mean was set by hand to 0.05."""
    workdir = os.path.join(self.tmp, name)
    shutil.copytree(self.ref, workdir)
    path = os.path.join(workdir, "results.json")
    with open(path) as f:
      results = json.load(f)
    results["methods"]["baseline"]["churn"]["mean"] = 0.05
    with open(path, "w") as f:
      json.dump(results, f, indent=1)
    return workdir

  def _listing(self, workdir):
    return {n: _read(os.path.join(workdir, n)) for n in sorted(os.listdir(workdir))
            if os.path.isfile(os.path.join(workdir, n)) and n != ".lock"}

  def test_rerun_refuses_an_edited_entry_naming_method_and_field(self):
    workdir = self._edited("rerun")
    before = self._listing(workdir)
    with self.assertRaisesRegex(ValueError, r"baseline\.churn \(stored mean 0\.05.*--repair"):
      train.train_and_evaluate(self.config, workdir)
    self.assertEqual(before, self._listing(workdir))

  def test_report_refuses_then_repair_restores_the_study_bytes(self):
    workdir = self._edited("report")
    before = self._listing(workdir)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      self.assertEqual(command.main(["report", workdir]), 1)
    lines = err.getvalue().strip().splitlines()
    self.assertLen(lines, 1)
    self.assertIn("baseline.churn", lines[0])
    self.assertEqual(before, self._listing(workdir))  # Nothing written.
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      self.assertEqual(command.main(["report", workdir, "--repair"]), 0)
    self.assertIn("repaired baseline.churn", err.getvalue())
    # The repaired results.json holds exactly what the study wrote.
    self.assertEqual(json.loads(_read(os.path.join(self.ref, "results.json"))),
                     json.loads(_read(os.path.join(workdir, "results.json"))))
    for name in ("results.md", "results.csv"):
      self.assertEqual(_read(os.path.join(self.ref, name)), _read(os.path.join(workdir, name)))
    # And a rerun now reuses it.
    train.train_and_evaluate(self.config, workdir)

  def test_untouched_workdir_reports_cleanly(self):
    workdir = os.path.join(self.tmp, "clean")
    shutil.copytree(self.ref, workdir)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      self.assertEqual(command.main(["report", workdir]), 0)
    self.assertEqual(err.getvalue(), "")
    self.assertEqual(_read(os.path.join(self.ref, "results.json")),
                     _read(os.path.join(workdir, "results.json")))


class DerivedSweepPointTest(absltest.TestCase):

  def test_edited_sweep_point_refused_on_reuse(self):
    from churn_jax.study import sweeps  # pylint: disable=g-import-not-at-top
    config = testing.tiny_config(num_runs=2, num_steps=2, methods="baseline")
    sweep = sweeps.Sweep("entropy", "beta", (0.1, 0.3))
    with tempfile.TemporaryDirectory() as tmp:
      config.data.cache_dir = tmp
      workdir = os.path.join(tmp, "wd")
      sweeps.train_study(config, workdir, [sweep], plain=["baseline"])
      path = os.path.join(workdir, "results.json")
      with open(path) as f:
        results = json.load(f)
      results["methods"]["entropy@beta=0.3"]["accuracy"]["values"][0] += 0.25
      with open(path, "w") as f:
        json.dump(results, f, indent=1)
      with self.assertRaisesRegex(ValueError, r"entropy@beta=0\.3\.accuracy"):
        sweeps.train_study(config, workdir, [sweep], plain=["baseline"])


if __name__ == "__main__":
  absltest.main()
