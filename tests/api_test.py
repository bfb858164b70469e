"""The public API: cheap import, version, compare and load_predictions' checks."""

import configparser
import contextlib
import io
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

import churn_jax
from churn_jax.cli import command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ApiTest(absltest.TestCase):

  def test_import_does_not_import_jax(self):
    code = ("import sys, churn_jax; assert 'jax' not in sys.modules, 'jax imported'; "
            "churn_jax.compare; assert 'churn_jax.api' in sys.modules; "
            "print(churn_jax.__version__)")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, timeout=120)
    self.assertEqual(out.returncode, 0, out.stderr)
    self.assertEqual(out.stdout.strip(), churn_jax.__version__)

  def test_version_is_the_packages_and_the_commands(self):
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    self.assertEqual(parser["metadata"]["version"], "attr: churn_jax.__version__")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
      self.assertEqual(command.main(["--version"]), 0)
    self.assertEqual(stdout.getvalue(), f"churn-jax {churn_jax.__version__}\n")

  def test_public_names(self):
    for name in ("run_study", "load_predictions", "load_results", "compare", "load_config",
                 "format_table", "Method"):
      self.assertTrue(callable(getattr(churn_jax, name)), name)
    with self.assertRaises(AttributeError):
      churn_jax.no_such_thing  # pylint: disable=pointless-statement

  def test_compare_against_numpy(self):
    rng = np.random.default_rng(0)
    logits_a, logits_b = rng.normal(size=(2, 200, 5))
    softmax = lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True)
    a, b = softmax(logits_a), softmax(logits_b)
    labels = rng.integers(0, 5, 200)
    out = churn_jax.compare(a, b, labels=labels, bootstrap=20)
    differ = a.argmax(1) != b.argmax(1)
    self.assertAlmostEqual(out["churn"], differ.mean(), places=12)
    self.assertAlmostEqual(out["accuracy_b"], (b.argmax(1) == labels).mean(), places=12)
    right_a = a.argmax(1) == labels
    self.assertAlmostEqual(out["churn_correct"] if right_a.any() else 0.0, np.mean(
        [differ[right_a].mean(), differ[b.argmax(1) == labels].mean()]), places=12)
    from_logits = churn_jax.compare(logits_a, logits_b, logits=True, bootstrap=20)
    self.assertAlmostEqual(from_logits["churn"], out["churn"], places=12)
    with self.assertRaisesRegex(ValueError, "not probabilities"):
      churn_jax.compare(logits_a, logits_b)

  def test_load_predictions_refuses_unknown_method_and_missing_results(self):
    with tempfile.TemporaryDirectory() as tmp:
      with self.assertRaisesRegex(ValueError, "no results.json"):
        churn_jax.load_predictions(tmp, "baseline")
      with open(os.path.join(tmp, "results.json"), "w") as f:
        f.write('{"methods": {"baseline": {}}}')
      with self.assertRaisesRegex(ValueError, "no method 'codistill'.*finished: baseline"):
        churn_jax.load_predictions(tmp, "codistill")
      with self.assertRaisesRegex(ValueError, "no predictions file"):
        churn_jax.load_predictions(tmp, "baseline")

  def test_load_config(self):
    config = churn_jax.load_config(os.path.join(ROOT, "experiments", "mnist1d.py:quick"))
    self.assertEqual(config.num_train_steps, 200)
    with self.assertRaisesRegex(ValueError, "config file not found"):
      churn_jax.load_config("/nonexistent/config.py")


if __name__ == "__main__":
  absltest.main()
