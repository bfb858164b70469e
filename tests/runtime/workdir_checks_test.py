"""The command line's --help, and the workdir checks made before a study starts: an unwritable
folder is refused, a gs:// path is written through the remote branch of fileio and never
turned into a local folder."""

import hashlib
import os
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest

from churn_jax.runtime import checkpoint, fileio, workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(path):
  with open(path, "rb") as f:
    return f.read()


class HelpTest(absltest.TestCase):

  def test_help_says_what_to_pass(self):
    proc = subprocess.run([sys.executable, "launch/main.py", "--help"], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=120)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    for text in ("--config=CONFIG_FILE[:ARGS] --workdir=DIR", "experiments/mnist1d.py",
                 "experiments/cifar10.py", "quick", "runlocal", "--config.num_runs=5",
                 "--config.methods=baseline,codistill", "--config.data.npz_path=FILE",
                 "config.json"):
      self.assertIn(text, proc.stdout)


class WorkdirCheckTest(absltest.TestCase):

  def test_not_writable(self):
    with tempfile.TemporaryDirectory() as tmp:
      with mock.patch("os.access", return_value=False):  # Root may write anywhere.
        with self.assertRaisesRegex(ValueError, f"{tmp} is not writable"):
          workdir_lock.check_workdir(os.path.join(tmp, "new"))

  def test_remote_write_path_on_a_local_backend(self):
    # The gs:// branch of fileio (epath, one upload), exercised on the local filesystem.
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "sub", "results.json")
      with mock.patch.object(fileio, "is_remote", return_value=True):
        fileio.atomic_write(path, "text\n")
        fileio.atomic_write(path + ".bin", b"\x00\x01")
      self.assertEqual(read(path), b"text\n")
      self.assertEqual(read(path + ".bin"), b"\x00\x01")
      self.assertEqual(fileio.sha256(path), hashlib.sha256(b"text\n").hexdigest())

  def test_gs_checkpoint_directory_is_not_made_local(self):
    with mock.patch("orbax.checkpoint.CheckpointManager") as manager:
      ckpt = checkpoint.MethodCheckpointer("gs://bucket/wd/checkpoints/baseline-0", 10)
    self.assertEqual(ckpt.directory, "gs://bucket/wd/checkpoints/baseline-0")
    self.assertEqual(manager.call_args[0][0], "gs://bucket/wd/checkpoints/baseline-0")


if __name__ == "__main__":
  absltest.main()
