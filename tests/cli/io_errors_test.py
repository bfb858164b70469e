"""Disk full anywhere (our writes, TensorBoard, orbax's TensorStore text) is one line naming
the path and errno, exit 1; injected here (a real 1.2 MB tmpfs run is in the report)."""

import contextlib
import errno
import io
import tempfile
import logging as std_logging
from unittest import mock

from absl.testing import absltest

from churn_jax.cli import app
from churn_jax.runtime import io_errors
from tests import testing

# What orbax 0.12.8 raised on a 1.2 MB tmpfs (abridged, same shape).
_ORBAX = ('RESOURCE_EXHAUSTED: Error writing local file "/w/checkpoints/b-1/100.orbax-checkpoint-'
          'tmp/state/_sharding": Failed writing: "/w/checkpoints/b-1/100.orbax-checkpoint-tmp/'
          'state/_sharding.__lock": Failed to write 3477 bytes to file 20: No space left on '
          "device [os_error_code='28']")


def _chained():
  """TensorBoard's flush fails (no path) while the orbax error is being handled."""
  try:
    try:
      raise ValueError(_ORBAX)
    except ValueError:
      raise OSError(errno.ENOSPC, "No space left on device")
  except OSError as e:
    return e


class DescribeTest(absltest.TestCase):

  def test_oserror_with_path(self):
    line = io_errors.describe(OSError(errno.ENOSPC, "No space left on device", "/w/a.json"))
    self.assertIn("writing /w/a.json", line)
    self.assertIn("errno 28, ENOSPC", line)

  def test_quota(self):
    line = io_errors.describe(OSError(errno.EDQUOT, "Disk quota exceeded", "/w/b"))
    self.assertIn("errno 122, EDQUOT", line)

  def test_orbax_text_and_chain(self):
    line = io_errors.describe(ValueError(_ORBAX))
    self.assertIn('writing /w/checkpoints/b-1/100.orbax-checkpoint-tmp/state/_sharding;', line)
    self.assertIn("errno 28", line)
    line = io_errors.describe(_chained(), "/w")  # The path comes from the context.
    self.assertIn("writing /w/checkpoints/b-1/", line)

  def test_no_path_names_the_workdir(self):
    line = io_errors.describe(OSError(errno.ENOSPC, "No space left on device"), "/w")
    self.assertIn("writing under /w;", line)

  def test_other_errors_are_not_storage_errors(self):
    self.assertIsNone(io_errors.describe(ValueError("invalid config: seed")))
    self.assertIsNone(io_errors.describe(FileNotFoundError(errno.ENOENT, "x", "/w/x")))
    self.assertIsNone(io_errors.describe(PermissionError(errno.EACCES, "denied", "/w")))


class TopLevelTest(absltest.TestCase):

  def test_one_line_exit_1(self):
    err = io.StringIO()
    with mock.patch("churn_jax.study.train.train_and_evaluate", side_effect=_chained()), \
        mock.patch.object(app, "_hard_exit", side_effect=SystemExit), \
        contextlib.redirect_stderr(err):
      with self.assertRaises(SystemExit):
        app.main(testing.tiny_config(), tempfile.mkdtemp())
    lines = err.getvalue().strip().splitlines()
    self.assertLen(lines, 1)
    self.assertTrue(lines[0].startswith("error: No space left on device (errno 28"), lines[0])
    app_exit = mock.Mock(side_effect=SystemExit)
    with mock.patch("churn_jax.study.train.train_and_evaluate", side_effect=_chained()), \
        mock.patch.object(app, "_hard_exit", app_exit), contextlib.redirect_stderr(err):
      with self.assertRaises(SystemExit):
        app.main(testing.tiny_config(), tempfile.mkdtemp())
    app_exit.assert_called_once_with(1)

  def test_other_errors_keep_their_own_line(self):
    err = io.StringIO()
    with mock.patch("churn_jax.study.train.train_and_evaluate",
                    side_effect=ValueError("invalid config: x")), contextlib.redirect_stderr(err):
      self.assertEqual(app.main(testing.tiny_config(), tempfile.mkdtemp()), 1)
    self.assertEqual(err.getvalue(), "error: invalid config: x\n")

  def test_orbax_disk_full_tracebacks_are_dropped(self):
    def record(level, msg, path="/venv/orbax/checkpoint/future.py"):
      return std_logging.LogRecord("absl", level, path, 1, msg, None, None)
    self.assertFalse(app._orbax_record_shown(record(std_logging.ERROR, _ORBAX)))
    self.assertTrue(app._orbax_record_shown(record(std_logging.ERROR, "other failure")))
    self.assertFalse(app._orbax_record_shown(record(std_logging.INFO, "transfer")))
    self.assertTrue(app._orbax_record_shown(record(std_logging.ERROR, _ORBAX, "/x/train.py")))


class HoldStartupInfoTest(absltest.TestCase):
  """INFO lines wait until the study passed its refusals ("dataset ..."), then come in order."""

  def _handler(self):
    emitted = []
    handler = std_logging.Handler()
    handler.emit = lambda r: emitted.append(r.getMessage())
    handler.addFilter(lambda r: "drop me" not in r.getMessage())  # As _quiet_orbax's.
    handler.addFilter(app._HoldStartupInfo(handler))
    return handler, emitted

  def _log(self, handler, level, msg):
    record = std_logging.LogRecord("absl", level, "/x/y.py", 1, msg, None, None)
    if handler.filter(record):
      handler.emit(record)

  def test_held_then_released_in_order(self):
    handler, emitted = self._handler()
    self._log(handler, std_logging.INFO, "backend")
    self._log(handler, std_logging.INFO, "drop me")  # The other filters apply on release.
    self._log(handler, std_logging.WARNING, "a warning")  # Warnings are never held.
    self.assertEqual(emitted, ["a warning"])
    self._log(handler, std_logging.INFO, "dataset mnist1d: 10 train")
    self._log(handler, std_logging.INFO, "method baseline")
    self.assertEqual(emitted, ["a warning", "backend", "dataset mnist1d: 10 train",
                               "method baseline"])

  def test_refusal_discards_the_held_lines(self):
    handler, emitted = self._handler()
    self._log(handler, std_logging.INFO, "backend")
    self.assertEqual(emitted, [])


if __name__ == "__main__":
  absltest.main()
