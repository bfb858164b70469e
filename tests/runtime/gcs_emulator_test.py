"""gs:// workdirs against a Cloud Storage emulator on loopback (gcp-storage-emulator).

Google's clients read STORAGE_EMULATOR_HOST (gcsfs, hence etils.epath and fileio.py); orbax
writes arrays through tensorstore, whose GCS driver reads TENSORSTORE_GCS_HTTP_URL instead
(found in its flags: "Url to used for http access to google cloud storage"); both point at
the emulator, so results, predictions, plots, curves and orbax checkpoints all go to the
bucket. GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: gcsfs would else probe the bucket over gRPC
and wait 60 s per call against the emulator. TENSORSTORE_GCS_REQUEST_CONCURRENCY=1: with
tensorstore's concurrent requests the emulator (one thread, no generation preconditions)
made an orbax save fail with "Malformed StorageGeneration" on its third checkpoint; one
request at a time it stores them all. A real bucket needs neither setting.

The emulator is installed by the `test` extra (setup.cfg); a missing or silent emulator
fails the test with what to install, it never skips.
"""

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

from absl.testing import absltest

from tests import fresh_venv

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BUCKET = "churn-test"
# gcp-storage-emulator answers some of tensorstore's conditional writes without a valid
# generation; orbax's save then fails with this text (seen ~1 save in 50 under load; never
# against a real bucket). The workdir stays resumable, so the test resumes as a user would.
_EMULATOR_FAULT = "Malformed StorageGeneration"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class GcsEmulatorTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    exe = shutil.which("gcp-storage-emulator") or os.path.join(
        os.path.dirname(sys.executable), "gcp-storage-emulator")
    if not os.path.exists(exe):
      raise AssertionError("gcp-storage-emulator is not installed: pip install -e '.[test]'")
    port = _free_port()
    cls.emulator = subprocess.Popen(
        [exe, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory",
         f"--default-bucket={_BUCKET}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    cls.env = dict(os.environ, PYTHONPATH=_ROOT, JAX_PLATFORMS="cpu", STORAGE_EMULATOR_HOST=url,
                   TENSORSTORE_GCS_HTTP_URL=url, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
                   TENSORSTORE_GCS_REQUEST_CONCURRENCY="1",
                   CHURN_JAX_CACHE=tempfile.mkdtemp(prefix="gcs_locks_"))
    cls.env.pop("XLA_FLAGS", None)
    os.environ.update({k: cls.env[k] for k in (
        "STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")})
    deadline = time.time() + 60
    while True:
      try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
      except OSError:
        if cls.emulator.poll() is not None or time.time() > deadline:
          cls.emulator.kill()
          raise AssertionError(f"the Cloud Storage emulator did not start on port {port}")
        time.sleep(0.2)

  @classmethod
  def tearDownClass(cls):
    cls.emulator.kill()
    cls.emulator.wait()
    super().tearDownClass()

  def launch(self, workdir, steps=40, log=None):
    args = [sys.executable, os.path.join(_ROOT, "launch", "main.py"),
            f"--config={_ROOT}/experiments/digits.py:quick", f"--workdir={workdir}",
            "--config.methods=baseline", f"--config.num_train_steps={steps}",
            "--config.model.hidden=(16,)", "--config.checkpoint_every_steps=5",
            "--config.progress=False", "--config.compile_cache_dir="]
    out = open(log or os.devnull, "w")
    proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT, text=True)
    out.close()
    return proc

  def files(self, prefix):
    """Every object under `prefix`, relative to it; listed afresh (gcsfs caches listings)."""
    import gcsfs  # pylint: disable=g-import-not-at-top  # After the env is set.
    fs = gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True, use_listings_cache=False)
    root = prefix[len("gs://"):].rstrip("/")
    return sorted(f[len(root):].lstrip("/") for f in fs.find(root))

  def test_study_in_a_bucket_is_killed_resumes_identically_and_is_exclusive(self):
    tmp = tempfile.mkdtemp(prefix="gcs_")
    local = os.path.join(tmp, "local")
    reference = self.launch(local)
    # A second study on the same bucket path is refused while the first holds its lock. If
    # the emulator's fault ends the first study before the second asks, the lock is rightly
    # free and the check says nothing: it is repeated on a fresh path.
    for attempt in range(3):
      workdir = f"gs://{_BUCKET}/studies/digits{attempt}"
      log = os.path.join(tmp, f"first{attempt}.log")
      first = self.launch(workdir, log=log)
      if not self._wait_for_lock(first, log):
        continue
      second_log = os.path.join(tmp, f"second{attempt}.log")
      second = self.launch(workdir, log=second_log)
      code = second.wait(timeout=300)
      with open(second_log) as f:
        text = f.read()
      if re.search(r"error: workdir gs://\S+ is in use by another study", text):
        self.assertEqual(code, 1)
        break
      # Not refused: only allowed when the holder had already died of the emulator's fault.
      self.assertFalse(self._alive_or_emulator_fault(first, log), text[-3000:])
    else:
      self.fail("the emulator's fault ended the first study in every attempt")
    deadline = time.time() + 600
    while not any(f.startswith("checkpoints/baseline-") for f in self.files(workdir)):
      self.assertLess(time.time(), deadline, "no checkpoint in the bucket")
      self._alive_or_emulator_fault(first, log)
      time.sleep(0.5)
    if self._alive_or_emulator_fault(first, log):
      first.send_signal(signal.SIGKILL)
    first.wait()

    resumed = False
    for attempt in range(3):  # The same command again, as a user resumes.
      rerun_log = os.path.join(tmp, f"rerun{attempt}.log")
      rerun = self.launch(workdir, log=rerun_log)
      code = rerun.wait(timeout=900)
      with open(rerun_log) as f:
        text = f.read()
      resumed |= re.search(r"method baseline: resumed from step \d+", text) is not None
      if code == 0 or _EMULATOR_FAULT not in text:
        break
    self.assertEqual(code, 0, text[-3000:])
    self.assertEqual(reference.wait(timeout=900), 0)
    self.assertTrue(resumed, "no rerun resumed from a checkpoint")

    files = self.files(workdir)
    for name in ("results.json", "results.md", "config.json", "predictions/baseline.npz",
                 "plots/accuracy_vs_churn.png", "curves/baseline.jsonl"):
      self.assertIn(name, files)
    ckpt = [f for f in files if f.startswith("checkpoints/baseline-") and "/40/" in f]
    self.assertTrue(ckpt, files)  # Orbax's final checkpoint, arrays and all, in the bucket.
    from etils import epath  # pylint: disable=g-import-not-at-top
    remote = json.loads(epath.Path(f"{workdir}/results.json").read_text())["methods"]
    with open(os.path.join(local, "results.json")) as f:
      self.assertEqual(remote, json.load(f)["methods"])  # Bitwise: sha256s of predictions too.

  def test_fresh_venv_with_the_launchers_packages_writes_to_a_bucket(self):
    # Exactly the distributions `tpu_vm.sh setup` installs (its requirement line read from the
    # script), in a venv of their own: a dependency gs:// needs and the launcher forgets fails
    # here, not on a TPU. The closure of those requirements is resolved from the installed
    # metadata and linked from this venv file by file (offline, seconds: a pip install of
    # jax[tpu] measured 649 s here); libtpu, jax[tpu]'s only addition, has no CPU use.
    with open(os.path.join(_ROOT, "launch", "tpu_vm.sh")) as f:
      script = f.read()
    self.assertIn('"churn_jax[gcs] @ file://${sdist}', script.replace("\\", ""))
    self.assertIn("'jax[tpu]==${JAX_VERSION}'", script)
    jax_version = re.search(r'JAX_VERSION="\$\{JAX_VERSION:-([^}]+)\}"', script).group(1)
    tmp = tempfile.mkdtemp(prefix="gcs_venv_")
    python, names = fresh_venv.build(tmp, ["churn_jax[gcs]", f"jax[tpu]=={jax_version}"],
                                     skip={"libtpu", "libtpu-nightly"})
    self.assertIn("gcsfs", names)  # The gcs extra brought it, not this venv.
    self.assertNotIn("gcp-storage-emulator", names)  # Only the test extra has it.
    workdir = f"gs://{_BUCKET}/fresh_venv/digits"
    env = dict(self.env)
    env.pop("PYTHONPATH")  # The installed sdist, not this checkout.
    run = subprocess.run(
        [python, os.path.join(_ROOT, "launch", "main.py"),
         f"--config={_ROOT}/experiments/digits.py:quick", f"--workdir={workdir}",
         "--config.methods=baseline", "--config.num_train_steps=4",
         "--config.model.hidden=(16,)", "--config.progress=False", "--config.compile_cache_dir="],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp)
    self.assertEqual(run.returncode, 0, run.stdout[-2000:] + run.stderr[-3000:])
    files = self.files(workdir)
    self.assertIn("results.json", files)
    self.assertTrue([f for f in files if f.startswith("checkpoints/baseline-") and "/4/" in f],
                    files)

  def _alive_or_emulator_fault(self, proc, log) -> bool:
    """True while `proc` runs; a process ended by the emulator's fault counts as interrupted."""
    if proc.poll() is None:
      return True
    with open(log) as f:
      text = f.read()
    self.assertIn(_EMULATOR_FAULT, text, "finished before the kill; raise the steps\n"
                  + text[-2000:])
    return False

  def _wait_for_lock(self, proc, log) -> bool:
    """Waits until `proc` holds its workdir lock; False if the emulator's fault ended it."""
    lock = os.path.join(self.env["CHURN_JAX_CACHE"], "locks")
    deadline = time.time() + 600
    while not self._holds_lock(lock, proc.pid):
      self.assertLess(time.time(), deadline, "the first study never took the lock")
      if not self._alive_or_emulator_fault(proc, log):
        return False
      time.sleep(0.2)
    return True

  @staticmethod
  def _holds_lock(directory, pid):
    if not os.path.isdir(directory):
      return False
    for name in os.listdir(directory):
      with open(os.path.join(directory, name)) as f:
        if f.read().startswith(f"pid {pid} "):
          return True
    return False


if __name__ == "__main__":
  absltest.main()
