"""gs:// workdirs against a Cloud Storage emulator on loopback (gcp-storage-emulator).

Google's clients read STORAGE_EMULATOR_HOST (gcsfs, hence etils.epath and fileio.py); orbax
writes arrays through tensorstore, whose GCS driver reads TENSORSTORE_GCS_HTTP_URL instead
(found in its flags: "Url to used for http access to google cloud storage"); both point at
the emulator, so results, predictions, plots, curves and orbax checkpoints all go to the
bucket. GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: gcsfs would else probe the bucket over gRPC
and wait 60 s per call against the emulator. A real bucket needs no setting.

The emulator runs through tests/gcs_emulator.py, which makes it answer like Cloud Storage
where tensorstore depends on it: x-goog-generation / x-goog-metageneration on downloads and
generation preconditions honoured (412, 304 for a read, ifGenerationMatch=0 "no live
object"). The stock emulator sends no generation with a download, so tensorstore stamps what
it read with generation 0, which its GCS driver then refuses as a condition: an orbax save
failed with "Malformed StorageGeneration" on the OCDBT manifest whenever tensorstore
re-read the manifest. Counted by benchmarks/gcs_emulator_faults.py (saves through churn_jax's
MethodCheckpointer; 2 loaded cores): stock 2/100 and 3/300 saves failed, 2/100 with
TENSORSTORE_GCS_REQUEST_CONCURRENCY=1 (so one request at a time does not help); wrapped
0/100 and 0/300, 0/300 with it. The fault was the emulator's, not tensorstore's nor
churn_jax's (a failed save left the previous checkpoint restoring bitwise), so these tests
tolerate none.
The wrapper's own answers are checked first (test_emulator_*).

The emulator is installed by the `test` extra (setup.cfg); a missing or silent emulator
fails the test with what to install, it never skips.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from absl.testing import absltest

from tests import fresh_venv
from tests import gcs_emulator
from tests import testing

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BUCKET = "churn-test"


class GcsEmulatorTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.emulator, cls.url = gcs_emulator.start(_BUCKET)
    cls.env = dict(os.environ, PYTHONPATH=_ROOT, JAX_PLATFORMS="cpu",
                   STORAGE_EMULATOR_HOST=cls.url, TENSORSTORE_GCS_HTTP_URL=cls.url,
                   GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
                   CHURN_JAX_CACHE=tempfile.mkdtemp(prefix="gcs_locks_"))
    cls.env["XLA_FLAGS"] = testing.child_xla_flags()
    cls.env.pop("TENSORSTORE_GCS_REQUEST_CONCURRENCY", None)  # Tensorstore's default, as on GCS.
    os.environ.update({k: cls.env[k] for k in (
        "STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")})

  @classmethod
  def tearDownClass(cls):
    cls.emulator.kill()
    cls.emulator.wait()
    super().tearDownClass()

  def request(self, method, path, body=None, headers=None):
    """(status, headers with lower-case names, body) of one request to the emulator."""
    req = urllib.request.Request(self.url + path, data=body, method=method,
                                 headers=headers or {})
    try:
      with urllib.request.urlopen(req, timeout=30) as answer:
        return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as e:
      return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

  def upload(self, name, body, condition=""):
    return self.request(
        "POST", f"/upload/storage/v1/b/{_BUCKET}/o?uploadType=media&name={name}{condition}",
        body, {"Content-Type": "application/octet-stream"})

  def test_emulator_answers_generations_like_cloud_storage(self):
    obj = f"/storage/v1/b/{_BUCKET}/o/wrapper%2Fobject"
    status, _, body = self.upload("wrapper%2Fobject", b"first", "&ifGenerationMatch=0")
    self.assertEqual(status, 200)
    first = int(json.loads(body)["generation"])
    # ifGenerationMatch=0: only when no live object; it exists now.
    self.assertEqual(self.upload("wrapper%2Fobject", b"x", "&ifGenerationMatch=0")[0], 412)
    for headers in ({}, {"Range": "bytes=1-3"}):  # Whole and ranged downloads.
      status, got, body = self.request("GET", obj + "?alt=media", headers=headers)
      self.assertIn(status, (200, 206))
      self.assertEqual(body, b"first" if not headers else b"irs")
      self.assertEqual(got.get("x-goog-generation"), str(first), got)
      self.assertEqual(got.get("x-goog-metageneration"), "1", got)
    self.assertEqual(self.request("GET", obj + f"?alt=media&ifGenerationNotMatch={first}")[0],
                     304)
    self.assertEqual(self.request("GET", obj + f"?ifGenerationMatch={first + 1}")[0], 412)
    status, _, body = self.upload("wrapper%2Fobject", b"second", f"&ifGenerationMatch={first}")
    self.assertEqual(status, 200)
    second = int(json.loads(body)["generation"])
    self.assertGreater(second, first)
    # A stale condition is refused and changes nothing.
    self.assertEqual(self.upload("wrapper%2Fobject", b"lost", f"&ifGenerationMatch={first}")[0],
                     412)
    self.assertEqual(self.request("DELETE", obj + f"?ifGenerationMatch={first}")[0], 412)
    status, got, body = self.request("GET", obj + f"?alt=media&ifGenerationMatch={second}")
    self.assertEqual((status, body, got.get("x-goog-generation")), (200, b"second", str(second)))
    self.assertIn(self.request("DELETE", obj + f"?ifGenerationMatch={second}")[0], (200, 204))
    self.assertEqual(self.request("GET", obj + "?alt=media")[0], 404)
    self.assertEqual(self.request("GET", obj + "?alt=media&ifGenerationMatch=0")[0], 204)

  def test_emulator_gives_tensorstore_the_generations_it_conditions_on(self):
    import tensorstore as ts  # pylint: disable=g-import-not-at-top  # After the env is set.
    kv = ts.KvStore.open({"driver": "gcs", "bucket": _BUCKET, "path": "wrapper_ts/"}).result()
    old = kv.write("key", b"old").result().generation
    new = kv.write("key", b"new").result().generation
    read = kv.read("key").result()
    # The stock emulator gave generation 0 here; a condition on it is "Malformed".
    self.assertEqual((read.state, read.value, read.stamp.generation), ("value", b"new", new))
    unchanged = kv.read("key", if_not_equal=new).result()
    self.assertEqual((unchanged.state, unchanged.stamp.generation), ("unspecified", new))
    self.assertEqual(kv.write("key", b"lost", if_equal=old).result().generation, b"")  # Refused.
    self.assertEqual(kv.read("key").result().value, b"new")
    self.assertNotEqual(kv.write("key", b"newer", if_equal=new).result().generation, b"")
    self.assertEqual(kv.read("key").result().value, b"newer")

  def launch(self, workdir, steps=20, log=None, plots=True, fault=None):
    """The study as a process; `fault` (tests/runtime/fault_main.py's CHURN_JAX_TEST_FAULT
    and CHURN_JAX_TEST_FAULT_WAIT) is injected into it."""
    main = os.path.join(_ROOT, "tests", "runtime", "fault_main.py") if fault else \
        os.path.join(_ROOT, "launch", "main.py")
    env = dict(self.env, **dict(zip(("CHURN_JAX_TEST_FAULT", "CHURN_JAX_TEST_FAULT_WAIT"),
                                    fault or ())))
    args = [sys.executable, main,
            f"--config={_ROOT}/experiments/digits.py:quick", f"--workdir={workdir}",
            "--config.methods=baseline", f"--config.num_train_steps={steps}",
            "--config.model.hidden=(16,)", "--config.checkpoint_every_steps=5",
            "--config.progress=False", f"--config.plots={plots}"]
    out = open(log or os.devnull, "w")
    proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    out.close()
    return proc

  def files(self, prefix):
    """Every object under `prefix`, relative to it; listed afresh (gcsfs caches listings)."""
    import gcsfs  # pylint: disable=g-import-not-at-top  # After the env is set.
    fs = gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True, use_listings_cache=False)
    root = prefix[len("gs://"):].rstrip("/")
    return sorted(f[len(root):].lstrip("/") for f in fs.find(root))

  def test_report_reads_the_verdict_tables_in_a_bucket(self):
    # What `churn-jax report` compares its new verdicts with (protocol/tables.read_verdicts):
    # the same tables read from a local folder and from the bucket give the same verdicts.
    from churn_jax.protocol import tables  # pylint: disable=g-import-not-at-top
    from etils import epath  # pylint: disable=g-import-not-at-top
    body = {"differences.csv": "method,d_churn_verdict,d_accuracy_verdict\nx,held,\n",
            "protocol_table2_c10.csv": "method,d_churn_verdict\ny,cannot tell\n",
            "results.csv": "method,d_churn_verdict\nz,held\n"}  # Not a verdict table.
    local = tempfile.mkdtemp(prefix="gcs_verdicts_")
    remote = f"gs://{_BUCKET}/verdicts"
    for name, text in body.items():
      with open(os.path.join(local, name), "w") as f:
        f.write(text)
      epath.Path(f"{remote}/{name}").write_text(text)
    expected = {("differences.csv", "x", "churn"): "held",
                ("protocol_table2_c10.csv", "y", "churn"): "cannot tell"}
    self.assertEqual(tables.read_verdicts(local), expected)
    self.assertEqual(tables.read_verdicts(remote), expected)

  def test_ablations_compare_to_reads_a_study_in_a_bucket(self):
    # launch/ablations.py --compare_to gs://...: checked before training, then read from there.
    from etils import epath  # pylint: disable=g-import-not-at-top
    from tests import testing  # pylint: disable=g-import-not-at-top
    ablations = testing.load_file("launch/ablations.py", "ablations_gcs")
    config, other = testing.tiny_config(), f"gs://{_BUCKET}/compare_to/topk_all"
    self.assertEqual(ablations.compare_to_problem(config, "topk", other),
                     f"--compare_to {other} is not a finished topk study: "
                     f"{other}/results.json is missing")
    results = {"methods": {"entropy": {"num_runs": 2, "accuracy": {"values": [0.5, 0.75]}}}}
    epath.Path(f"{other}/results.json").write_text(json.dumps(results))
    self.assertIsNone(ablations.compare_to_problem(config, "topk", other))
    self.assertEqual(ablations.other_results(other, ""), results)

  def test_study_in_a_bucket_is_killed_resumes_identically_and_is_exclusive(self):
    tmp = tempfile.mkdtemp(prefix="gcs_")
    local = os.path.join(tmp, "local")
    reference = self.launch(local, plots=False)  # Only its results.json is compared.
    workdir = f"gs://{_BUCKET}/studies/digits"
    log = os.path.join(tmp, "first.log")
    # The first study kills itself once its step-10 checkpoint is in the bucket, but only after
    # the test lets it (the go file), so it still holds the lock when the second one starts.
    # Killing it from here after seeing a checkpoint in the bucket raced the study: it was
    # sometimes done training by then, and the rerun reused instead of resuming.
    go = os.path.join(tmp, "go")
    first = self.launch(workdir, log=log, fault=("sigkill@baseline:10", go))
    self._wait_for_lock(first, log)
    second_log = os.path.join(tmp, "second.log")
    second = self.launch(workdir, log=second_log)  # Refused while the first holds its lock.
    code = second.wait(timeout=300)
    with open(second_log) as f:
      text = f.read()
    self.assertRegex(text, r"error: workdir gs://\S+ is in use by another study")
    self.assertEqual(code, 1)
    self._assert_alive(first, log)
    with open(go, "w"):
      pass
    self.assertEqual(first.wait(timeout=900), -signal.SIGKILL)
    with open(log) as f:
      self.assertIn("fault_main: signal 9 to this process at step 10", f.read())
    finished = re.compile(r"checkpoints/baseline-[^/]+/10/commit_success\.txt")
    self.assertTrue([f for f in self.files(workdir) if finished.fullmatch(f)])

    rerun_log = os.path.join(tmp, "rerun.log")
    rerun = self.launch(workdir, log=rerun_log)  # The same command again, as a user resumes.
    code = rerun.wait(timeout=900)
    with open(rerun_log) as f:
      text = f.read()
    self.assertEqual(code, 0, text[-3000:])
    self.assertIn("method baseline: resumed from step 10", text)
    self.assertEqual(reference.wait(timeout=900), 0)

    files = self.files(workdir)
    # Every plot a local study draws: the reliability diagram and the curves read the
    # predictions and curves back from the bucket (os.path.exists once skipped them there).
    for name in ("results.json", "results.md", "config.json", "predictions/baseline.npz",
                 "plots/accuracy_vs_churn.png", "plots/reliability.png",
                 "plots/training_curves.png", "curves/baseline.jsonl"):
      self.assertIn(name, files)
    ckpt = [f for f in files if f.startswith("checkpoints/baseline-") and "/20/" in f]
    self.assertTrue(ckpt, files)  # Orbax's final checkpoint, arrays and all, in the bucket.
    from etils import epath  # pylint: disable=g-import-not-at-top
    remote = json.loads(epath.Path(f"{workdir}/results.json").read_text())["methods"]
    with open(os.path.join(local, "results.json")) as f:
      self.assertEqual(remote, json.load(f)["methods"])  # Bitwise: sha256s of predictions too.
    # Once more: the finished method is checked in the bucket and reused (its predictions
    # were looked for on the local disk: every rerun of a finished gs:// study failed).
    again_log = os.path.join(tmp, "again.log")
    again = self.launch(workdir, log=again_log)
    code = again.wait(timeout=900)
    with open(again_log) as f:
      text = f.read()
    self.assertEqual(code, 0, text[-3000:])
    self.assertIn("method baseline: finished earlier, results reused", text)

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
         "--config.model.hidden=(16,)", "--config.progress=False", "--config.plots=False"],
        env=env, capture_output=True, text=True, timeout=900, cwd=tmp)
    self.assertEqual(run.returncode, 0, run.stdout[-2000:] + run.stderr[-3000:])
    files = self.files(workdir)
    self.assertIn("results.json", files)
    self.assertTrue([f for f in files if f.startswith("checkpoints/baseline-") and "/4/" in f],
                    files)
    self.assertFalse([f for f in files if f.startswith("plots/")])  # --config.plots=False.
    # `churn-jax report` on the bucket draws them afterwards from what the study left there
    # (it once looked for results.json on the local disk and refused every gs:// workdir).
    report = subprocess.run([python, "-m", "churn_jax.cli", "report", workdir], env=env,
                            capture_output=True, text=True, timeout=900, cwd=tmp)
    self.assertEqual(report.returncode, 0, report.stdout[-2000:] + report.stderr[-3000:])
    files = self.files(workdir)
    for name in ("plots/accuracy_vs_churn.png", "plots/reliability.png",
                 "plots/training_curves.png", "results.md"):
      self.assertIn(name, files)

  def _assert_alive(self, proc, log):
    if proc.poll() is not None:
      with open(log) as f:
        self.fail(f"the first study ended (exit {proc.returncode}) before it was killed; "
                  f"raise the steps if it finished\n{f.read()[-3000:]}")

  def _wait_for_lock(self, proc, log):
    lock = os.path.join(self.env["CHURN_JAX_CACHE"], "locks")
    deadline = time.time() + 600
    while not self._holds_lock(lock, proc.pid):
      self.assertLess(time.time(), deadline, "the first study never took the lock")
      self._assert_alive(proc, log)
      time.sleep(0.2)

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
