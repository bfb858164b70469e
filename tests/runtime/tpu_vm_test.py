"""launch/tpu_vm.sh against a fake gcloud: the VM lifecycle is safe on every failure.

The fake gcloud (written below) records every call, runs `tpu-vm ssh --command` here in bash
with HOME set to a scratch "VM home" (so run.sh, its trap and the detached run are the real
ones), copies `scp` and `gcloud storage cp` into scratch folders, and makes the Nth ssh call
fail on demand (FAKE_FAIL_SSH=2,5), as a VM that is rebooting or not yet reachable would.
sudo, gcsfuse, mountpoint, curl and python3.11 are fakes that record; the VM's venv python
plays the training process: it runs FAKE_TRAIN_SECONDS and exits FAKE_TRAIN_RC, or 143 on
SIGTERM.
"""

import os
import re
import stat
import subprocess
import tempfile
import time

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SCRIPT = os.path.join(_ROOT, "launch", "tpu_vm.sh")

_GCLOUD = r'''#!/usr/bin/env bash
echo "gcloud $*" >> "$FAKE_LOG"
[[ "$1" == --project=* ]] && shift
if [[ "$1 $2" == "storage cp" ]]; then
  shift 2; while [[ "$1" == -* && "$1" != - ]]; do shift; done
  dst="$FAKE_GCS/${2#gs://}"; mkdir -p "$(dirname "$dst")"
  if [[ "$1" == - ]]; then cat > "$dst"; else cp -r "$1" "$dst"; fi
  exit 0
fi
if [[ "$1 $2 $3 $4" == "compute tpus tpu-vm ssh" ]]; then
  n=$(( $(cat "$FAKE_DIR/ssh_count" 2>/dev/null || echo 0) + 1 )); echo $n > "$FAKE_DIR/ssh_count"
  if [[ ",${FAKE_FAIL_SSH:-}," == *",$n,"* ]]; then
    echo "ssh $n: connection timed out" >&2; exit 255
  fi
  for a in "$@"; do [[ "$a" == --command=* ]] && cmd="${a#--command=}"; done
  cd "$HOME" && exec bash -c "$cmd"
fi
if [[ "$1 $2 $3 $4" == "compute tpus tpu-vm scp" ]]; then
  shift 4; files=()
  for a in "$@"; do [[ "$a" == -* ]] || files+=("$a"); done
  mkdir -p "$HOME/churn_jax_dist"; cp "${files[@]:0:${#files[@]}-1}" "$HOME/churn_jax_dist/"
  exit 0
fi
if [[ ",${FAKE_FAIL:-}," == *",$4,"* ]]; then echo "gcloud $4 failed" >&2; exit 1; fi
exit 0
'''
_RECORD = '#!/usr/bin/env bash\necho "$(basename "$0") $*" >> "$FAKE_LOG"\n'
_VENV_PYTHON = r'''#!/usr/bin/env bash
echo "venv-python $*" >> "$FAKE_LOG"
[[ "$1" == -c ]] && exit 0
trap 'echo "train end 143" >> "$FAKE_LOG"; exit 143' TERM
echo "training $*"
sleep "${FAKE_TRAIN_SECONDS:-0}" & wait $!
echo "train end ${FAKE_TRAIN_RC:-0}" >> "$FAKE_LOG"; exit "${FAKE_TRAIN_RC:-0}"
'''
_PYTHON311 = r'''#!/usr/bin/env bash
echo "python3.11 $*" >> "$FAKE_LOG"
if [[ "$1 $2" == "-m venv" ]]; then
  mkdir -p "$3/bin"; cp "$FAKE_DIR/venv_python" "$3/bin/python"
  cp "$FAKE_DIR/bin/sudo" "$3/bin/pip"; cp "$FAKE_DIR/bin/sudo" "$3/bin/tfds"
fi
'''
_SDIST = '#!/usr/bin/env bash\ntouch "$3/churn_jax-0.1.tar.gz"\n'


def _write(path, text):
  with open(path, "w") as f:
    f.write(text)
  os.chmod(path, stat.S_IRWXU)


class TpuVmTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(prefix="tpu_vm_")
    self.home, self.gcs = os.path.join(self.dir, "home"), os.path.join(self.dir, "gcs")
    self.log = os.path.join(self.dir, "calls.log")
    bin_dir = os.path.join(self.dir, "bin")
    for d in (self.home, self.gcs, bin_dir):
      os.makedirs(d)
    _write(os.path.join(bin_dir, "gcloud"), _GCLOUD)
    for name in ("sudo", "gcsfuse", "curl"):
      _write(os.path.join(bin_dir, name), _RECORD)
    _write(os.path.join(bin_dir, "mountpoint"), _RECORD + "exit 1\n")
    _write(os.path.join(bin_dir, "lsb_release"), "#!/bin/sh\necho jammy\n")
    _write(os.path.join(bin_dir, "python3.11"), _PYTHON311)
    _write(os.path.join(self.dir, "venv_python"), _VENV_PYTHON)
    _write(os.path.join(self.dir, "sdist"), _SDIST)
    open(self.log, "w").close()
    self.env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", HOME=self.home,
                    FAKE_LOG=self.log, FAKE_GCS=self.gcs, FAKE_DIR=self.dir,
                    PYTHON=os.path.join(self.dir, "sdist"), TPU_NAME="churn-test",
                    BUCKET="bkt", PROJECT="p", POLL_SECONDS="0.2", LOG_SYNC_SECONDS="1")

  def tpu_vm(self, *args, timeout=120, **env):
    proc = subprocess.run(["bash", _SCRIPT, *args], env=dict(self.env, **env),
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr

  def calls(self):
    with open(self.log) as f:
      return f.read().splitlines()

  def index(self, pattern):
    lines = self.calls()
    hits = [i for i, l in enumerate(lines) if re.search(pattern, l)]
    return hits[0] if hits else None

  def exit_record(self):
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    path = os.path.join(self.gcs, "bkt", "churn_logs", "churn-test", host)
    with open(path + ".exit") as f:
      code = f.read().strip()
    with open(path + ".log") as f:
      return code, f.read()

  def test_all_polls_through_unreachable_and_deletes_after_the_run(self):
    # ssh 1-3: setup (2) and run; ssh 4, the first status poll, fails.
    rc, out = self.tpu_vm("all", "--config=c.py", FAKE_FAIL_SSH="4", FAKE_TRAIN_SECONDS="3")
    self.assertEqual(rc, 0, out)
    self.assertIn("churn-test unreachable", out)
    end, delete = self.index("^train end 0"), self.index("tpu-vm delete")
    self.assertIsNotNone(end, out)
    self.assertIsNotNone(delete, out)
    self.assertLess(end, delete)  # Never deleted while the run was alive.
    code, log = self.exit_record()
    self.assertEqual(code, "0")
    self.assertIn("training launch/main.py --config=c.py", log)
    # apt waits for its lock; the data mount is made by setup and again by run.
    apt = [l for l in self.calls() if "apt-get" in l]
    self.assertTrue(apt)
    for line in apt:
      self.assertIn("-o DPkg::Lock::Timeout=", line)
    self.assertLen([l for l in self.calls() if l.startswith("gcsfuse ")], 2)
    self.assertTrue(any("churn_jax[gcs] @ file://" in l for l in self.calls()), out)

  def test_persistently_unreachable_vm_is_left_up(self):
    rc, out = self.tpu_vm("all", "--config=c.py", FAKE_FAIL_SSH="4,5,6", UNREACHABLE_POLLS="3",
                          FAKE_TRAIN_SECONDS="5")
    self.assertEqual(rc, 2, out)
    self.assertIn("its run may be alive", out)
    self.assertIsNone(self.index("tpu-vm delete"), out)

  def test_failed_setup_or_run_deletes_the_vm_unless_keep(self):
    for fail, phase in (("2", "setup"), ("3", "run")):
      os.remove(os.path.join(self.dir, "ssh_count")) if os.path.exists(
          os.path.join(self.dir, "ssh_count")) else None
      open(self.log, "w").close()
      rc, out = self.tpu_vm("all", "--config=c.py", FAKE_FAIL_SSH=fail)
      self.assertNotEqual(rc, 0, phase)
      self.assertIsNotNone(self.index("tpu-vm delete"), f"{phase}: {out}")
      self.assertIsNone(self.index("^venv-python launch/main.py"), phase)
    os.remove(os.path.join(self.dir, "ssh_count"))
    open(self.log, "w").close()
    rc, out = self.tpu_vm("all", "--keep", "--config=c.py", FAKE_FAIL_SSH="2")
    self.assertNotEqual(rc, 0)
    self.assertIn("--keep: churn-test is left up", out)
    self.assertIsNone(self.index("tpu-vm delete"), out)

  def test_failed_create_deletes_what_was_made(self):
    rc, out = self.tpu_vm("all", "--config=c.py", FAKE_FAIL="create")
    self.assertNotEqual(rc, 0, out)
    self.assertIsNotNone(self.index("tpu-vm delete"), out)
    self.assertIsNone(self.index("tpu-vm ssh"), out)

  def test_stop_records_exit_143_and_uploads_the_log(self):
    venv = os.path.join(self.home, "churn_jax", ".venv", "bin")
    os.makedirs(venv)
    os.symlink(os.path.join(self.dir, "venv_python"), os.path.join(venv, "python"))
    rc, out = self.tpu_vm("run", "--config=c.py", FAKE_TRAIN_SECONDS="60")
    self.assertEqual(rc, 0, out)
    deadline = time.time() + 30
    while self.index("^venv-python launch") is None or "running" not in self.tpu_vm("status")[1]:
      self.assertLess(time.time(), deadline, self.tpu_vm("status")[1])
      time.sleep(0.2)
    self.assertEqual(self.tpu_vm("stop")[0], 0)
    while "exit 143" not in self.tpu_vm("status")[1]:
      self.assertLess(time.time(), deadline, self.tpu_vm("status")[1])
      time.sleep(0.2)
    code, log = self.exit_record()
    self.assertEqual(code, "143")
    self.assertIn("training launch/main.py --config=c.py", log)
    self.assertIsNotNone(self.index("^train end 143"))

  def test_prepare_builds_into_the_bucket_never_the_boot_disk(self):
    rc, out = self.tpu_vm("prepare", "cifar10")
    self.assertEqual(rc, 0, out)
    build = [l for l in self.calls() if l.startswith("tfds build")]  # The fake tfds's record.
    self.assertLen(build, 1)
    self.assertIn("--data_dir=gs://bkt/tensorflow_datasets", build[0])
    self.assertNotIn("/tmp/", build[0])
    # A folder on the root filesystem (the boot disk) is refused before anything builds.
    rc, out = self.tpu_vm("prepare", "cifar10", PREPARE_DIR=os.path.join(self.home, "tfds"))
    self.assertEqual(rc, 1, out)
    self.assertIn("is on the boot disk", out)
    self.assertLen([l for l in self.calls() if l.startswith("tfds build")], 1)

  def test_status_says_unreachable(self):
    rc, out = self.tpu_vm("status", FAKE_FAIL_SSH="1")
    self.assertEqual((rc, out.strip()), (0, "churn-test unreachable"))
    rc, out = self.tpu_vm("status")
    self.assertRegex(out.strip(), r"^\S+ idle$")


if __name__ == "__main__":
  absltest.main()
