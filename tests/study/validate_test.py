"""Every bad input gives one clear line, a non-zero exit, and leaves the workdir untouched."""

import contextlib
import io
import os
import tempfile
from unittest import mock

from absl.testing import absltest, parameterized
import numpy as np

from churn_jax.cli import app
from churn_jax.outputs import results_files
from churn_jax.study import validate
from experiments import mnist1d
from tests import testing


def with_changes(**changes):
  config = testing.tiny_config()
  for key, value in changes.items():
    target = config
    *path, last = key.split("__")
    for part in path:
      target = target[part]
    target[last] = value
  return config


class ValidateConfigTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("one_run", dict(num_runs=1), "num_runs must be >= 2"),
      ("unknown_method", dict(methods="baseline,codistil"), "unknown method 'codistil'"),
      ("unknown_kind", dict(method_configs__baseline__kind="magic"), "unknown kind 'magic'"),
      ("unknown_model", dict(model__name="resnet7"), "unknown model 'resnet7'"),
      ("bad_model_arg", dict(model__hidden=(8,), model__depth=3), "depth"),
      ("unknown_dataset", dict(data__name="mnist2d"), "unknown dataset 'mnist2d'"),
      ("entropy_beta_range", dict(methods="entropy", method_configs__entropy__beta=1.5),
       r"method_configs.entropy.beta = 1.5 is outside \[0, 1\]"),
      ("codistill_negative", dict(method_configs__codistill__beta__value=-1.0),
       r"method_configs.codistill.beta = -1 is outside \[0, inf\]"),
      ("strategy", dict(strategy="pmap"), "unknown strategy 'pmap'"),
      ("vary", dict(vary="init,order"), r"vary: unknown source\(s\) \['order'\]"),
      ("alpha", dict(schurn_alpha=0.0), "schurn_alpha must be > 0"),
      ("optimizer", dict(optimizer__name="lion"), "unknown optimizer 'lion'"),
      ("empty_methods", dict(methods=" "), "config.methods is empty"),
      ("hidden_zero", dict(model__hidden=(0,)), r"model.hidden\[0\] = 0 must be >= 1"),
      ("hidden_negative", dict(model__hidden=(16, -5)), r"model.hidden\[1\] = -5 must be >= 1"),
      ("lr_nan", dict(lr__base=float("nan")), "lr.base = nan is not a finite number"),
      ("beta_inf", dict(method_configs__codistill__beta__value=float("inf")),
       "method_configs.codistill.beta.value = inf is not a finite number"),
      ("alpha_nan", dict(schurn_alpha=float("nan")), "schurn_alpha = nan is not a finite number"),
  )
  def test_bad_config(self, changes, message):
    with self.assertRaisesRegex(ValueError, "invalid config: .*" + message):
      validate.validate_config(with_changes(**changes))

  def test_batch_not_divisible_by_data_axis(self):
    # 4 devices: the baseline (M = 1) of 5 runs puts all 4 on the data axis.
    config = with_changes(num_runs=5, batch_size=6)
    with mock.patch("jax.device_count", return_value=4):
      with self.assertRaisesRegex(ValueError, "batch_size 6 is not divisible by the data axis"):
        validate.validate_config(config)

  def test_good_config_passes(self):
    validate.validate_config(testing.tiny_config())


class CliErrorTest(parameterized.TestCase):
  """The command line's study half (churn_jax.cli.app.main), in this process: exit code 1,
  one line on stderr, the earlier results untouched.

  These errors are raised inside the study, after flag parsing; that a study process turns
  such a line into its exit code is checked by tests/runtime/faults_test.py's bad inputs
  (labels, npz), each in its own process, so these need not start one each.
  """

  def _run(self, workdir, **overrides):
    config = mnist1d.get_config()
    config.compile_cache_dir = ""  # Do not turn JAX's cache on in the test process.
    config.update_from_flattened_dict(overrides)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      code = app.main(config, workdir)
    return code, err.getvalue()

  def _workdir_with_results(self, tmp):
    workdir = os.path.join(tmp, "wd")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      f.write('{"config": {}, "methods": {"baseline": {"fingerprint": "x"}}}\n')
    return workdir

  @parameterized.named_parameters(
      ("one_run", {"num_runs": 1}, "num_runs must be >= 2"),
      ("coefficient", {"method_configs.entropy.beta": 2.0}, "outside [0, 1]"),
      ("missing_npz", {"data.npz_path": "/nonexistent.npz"}, "npz file not found"),
      ("other_config", {"methods": "baseline"}, "from a different config"),
      ("labels", {"data.npz_path": "{bad_npz}"}, "labels"),
  )
  def test_error_is_one_line_and_nothing_is_lost(self, overrides, message):
    with tempfile.TemporaryDirectory() as tmp:
      bad_npz = os.path.join(tmp, "bad.npz")
      np.savez(bad_npz, x_train=np.zeros((4, 3)), y_train=np.array([0, 1, -1, 0]),
               x_test=np.zeros((2, 3)), y_test=np.array([0, 1]))
      workdir = self._workdir_with_results(tmp)
      before = sorted(os.listdir(workdir)), open(os.path.join(workdir, "results.json")).read()
      overrides = {k: v.format(bad_npz=bad_npz) if isinstance(v, str) else v
                   for k, v in overrides.items()}
      code, stderr = self._run(workdir, **overrides)
      self.assertEqual(code, 1, stderr[-1000:])
      self.assertLen(stderr.splitlines(), 1, stderr)
      self.assertTrue(stderr.startswith("error: "), stderr)
      self.assertIn(message, stderr)
      after = sorted(os.listdir(workdir)), open(os.path.join(workdir, "results.json")).read()
      self.assertEqual(before, after)

  def test_unreadable_results_json(self):
    with tempfile.TemporaryDirectory() as tmp:
      workdir = os.path.join(tmp, "wd")
      os.makedirs(workdir)
      with open(os.path.join(workdir, "results.json"), "w") as f:
        f.write('{"methods": {"baseline"')  # Truncated.
      code, stderr = self._run(workdir, methods="baseline")
      self.assertEqual(code, 1)
      self.assertIn("results.json is unreadable", stderr)


class AtomicWriteTest(absltest.TestCase):

  def test_failed_write_keeps_old_file_and_leaves_no_temporary(self):
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "results.json")
      results_files.atomic_write(path, "old\n")
      with mock.patch("os.replace", side_effect=OSError("disk full")):  # Simulated crash.
        with self.assertRaises(OSError):
          results_files.atomic_write(path, "new\n")
      self.assertEqual(open(path).read(), "old\n")
      self.assertEqual(os.listdir(tmp), ["results.json"])


if __name__ == "__main__":
  absltest.main()
