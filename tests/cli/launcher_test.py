"""launch/tpu_vm.sh and launch/slurm.sbatch against a fake gcloud / srun that record calls.

The fake gcloud appends each command line to a log, answers `queued-resources describe`
from a script of states, copies `tpu-vm scp` files into a fake remote $HOME, and runs the
`tpu-vm ssh --command` scripts of `run` and `status` in bash there (one host), so the detached
run, its refusal of a second copy, its log copies to the bucket and its exit status are
executed, not only printed. The remote python is a stub that records its arguments and
JAX_PLATFORMS.
"""

import os
import stat
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest, parameterized

import churn_jax

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_TPU_VM = os.path.join(_ROOT, "launch", "tpu_vm.sh")

_FAKE_GCLOUD = r"""#!/usr/bin/env bash
{ printf '%s\x1f' gcloud "$@"; printf '\x1e'; } >> "$FAKE_LOG"  # Unit/record separators.
args=" $* "
if [[ "$args" == *" queued-resources describe "* ]]; then
  n=$(cat "$FAKE_DIR/describes" 2>/dev/null || echo 0); echo $((n + 1)) > "$FAKE_DIR/describes"
  if (( n < 1 )); then echo WAITING_FOR_RESOURCES; else echo ACTIVE; fi
elif [[ "$args" == *" tpu-vm scp "* ]]; then
  files=(); for a in "$@"; do [[ -f "$a" ]] && files+=("$a"); done
  mkdir -p "$FAKE_HOME/churn_jax_dist" && cp "${files[@]}" "$FAKE_HOME/churn_jax_dist/"
elif [[ "$args" == *" tpu-vm ssh "* ]]; then
  for a in "$@"; do [[ "$a" == --command=* ]] && cmd="${a#--command=}"; done
  if [[ "$cmd" == *run.pid* ]]; then HOME="$FAKE_HOME" bash -c "$cmd"; exit $?; fi
elif [[ "$args" == *" storage cp "* ]]; then
  cat > /dev/null
fi
exit 0
"""

_FAKE_PYTHON = r"""#!/usr/bin/env bash
printf '%s\n' "JAX_PLATFORMS=$JAX_PLATFORMS" "$@" > "$FAKE_DIR/python_args"
echo "training"
sleep "${FAKE_TRAIN_SECONDS:-0}"
exit "${FAKE_RC:-0}"
"""


def _executable(path, text):
  with open(path, "w") as f:
    f.write(text)
  os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


class TpuVmTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(prefix="launcher_")
    self.home = os.path.join(self.dir, "home")
    bin_dir = os.path.join(self.dir, "bin")
    os.makedirs(os.path.join(self.home, "churn_jax", ".venv", "bin"))
    os.makedirs(bin_dir)
    _executable(os.path.join(bin_dir, "gcloud"), _FAKE_GCLOUD)
    for name in ("sudo", "gcsfuse", "mountpoint"):  # `run` re-makes the data mount.
      _executable(os.path.join(bin_dir, name), "#!/bin/sh\nexit 0\n")
    _executable(os.path.join(self.home, "churn_jax", ".venv", "bin", "python"), _FAKE_PYTHON)
    self.log = os.path.join(self.dir, "calls")
    self.env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=self.log,
                    FAKE_DIR=self.dir, FAKE_HOME=self.home, PROJECT="p", ZONE="z",
                    BUCKET="bkt", TPU_NAME="t1", POLL_SECONDS="0", LOG_SYNC_SECONDS="1",
                    PYTHON=sys.executable)
    for key in ("RUNTIME_VERSION", "QUEUED", "SPOT", "ACCELERATOR_TYPE"):
      self.env.pop(key, None)

  def tpu_vm(self, *args, **env):
    return subprocess.run(["bash", _TPU_VM, *args], env=dict(self.env, **env),
                          capture_output=True, text=True, timeout=120)

  def calls(self):
    if not os.path.exists(self.log):
      return []
    with open(self.log) as f:
      return [call.split("\x1f")[:-1] for call in f.read().split("\x1e")[:-1]]

  @parameterized.parameters(("v2-8", "tpu-ubuntu2204-base"), ("v3-8", "tpu-ubuntu2204-base"),
                            ("v4-32", "tpu-ubuntu2204-base"),
                            ("v5litepod-8", "v2-alpha-tpuv5-lite"),
                            ("v5p-8", "v2-alpha-tpuv5"), ("v6e-8", "v2-alpha-tpuv6e"))
  def test_runtime_version_follows_the_accelerator(self, accelerator, version):
    proc = self.tpu_vm("create", ACCELERATOR_TYPE=accelerator)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    [call] = self.calls()
    self.assertEqual(call[:7], ["gcloud", "--project=p", "compute", "tpus", "tpu-vm", "create",
                                "t1"])
    self.assertIn(f"--version={version}", call)
    self.assertIn(f"--accelerator-type={accelerator}", call)
    self.assertNotIn("--spot", call)

  def test_unknown_accelerator_is_one_line_and_creates_nothing(self):
    proc = self.tpu_vm("all", "--workdir=x", ACCELERATOR_TYPE="v9-8")
    self.assertEqual(proc.returncode, 1)
    self.assertEqual(proc.stderr.count("\n"), 1, proc.stderr)
    self.assertIn("set RUNTIME_VERSION", proc.stderr)
    self.assertEqual(self.calls(), [])
    self.assertEqual(self.tpu_vm("create", ACCELERATOR_TYPE="v9-8",
                                 RUNTIME_VERSION="custom").returncode, 0)
    self.assertIn("--version=custom", self.calls()[0])

  def test_queued_spot_resource_waits_until_active_and_deletes_it(self):
    proc = self.tpu_vm("create", QUEUED="1", SPOT="1", ACCELERATOR_TYPE="v5litepod-8")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    calls = self.calls()
    self.assertEqual(calls[0][2:7], ["compute", "tpus", "queued-resources", "create", "t1"])
    self.assertIn("--node-id=t1", calls[0])
    self.assertIn("--runtime-version=v2-alpha-tpuv5-lite", calls[0])
    self.assertIn("--spot", calls[0])
    describes = [c for c in calls if "describe" in c]
    self.assertLen(describes, 2)  # WAITING_FOR_RESOURCES, then ACTIVE.
    self.assertIn("WAITING_FOR_RESOURCES", proc.stderr)
    self.tpu_vm("delete", QUEUED="1")
    self.assertEqual(self.calls()[-1][2:7], ["compute", "tpus", "queued-resources", "delete",
                                             "t1"])
    self.assertIn("--force", self.calls()[-1])

  def test_setup_ships_an_sdist_and_needs_no_git_on_the_vm(self):
    proc = self.tpu_vm("setup")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    shipped = sorted(os.listdir(os.path.join(self.home, "churn_jax_dist")))
    self.assertEqual(shipped, [f"churn_jax-{churn_jax.__version__}.tar.gz", "churn_jax_files.tgz"])
    files = subprocess.run(["tar", "tzf", os.path.join(self.home, "churn_jax_dist",
                                                       "churn_jax_files.tgz")],
                           capture_output=True, text=True, check=True).stdout.split()
    self.assertIn("launch/main.py", files)
    self.assertIn("experiments/cifar10.py", files)
    [install] = [c for c in self.calls() if "ssh" in c and any("pip install" in a for a in c)]
    script = [a for a in install if a.startswith("--command=")][0]
    self.assertNotIn("git", script)
    self.assertIn('"churn_jax[gcs] @ file://${sdist}"', script)
    self.assertIn("'jax[tpu]==0.10.2'", script)
    self.assertIn("JAX_PLATFORMS=tpu", script)

  def test_run_is_detached_refuses_a_second_copy_and_reports_its_exit(self):
    workdir = "gs://bkt/churn/cifar 10"  # Passed as is (no gcsfuse rewrite), quoting kept.
    proc = self.tpu_vm("run", "--config=experiments/cifar10.py", f"--workdir={workdir}",
                       FAKE_TRAIN_SECONDS="3")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("started", proc.stdout)
    again = self.tpu_vm("run", "--config=experiments/cifar10.py", f"--workdir={workdir}")
    self.assertNotEqual(again.returncode, 0)
    self.assertIn("a run is alive", again.stderr)
    self.assertIn("running", self.tpu_vm("status").stdout)
    deadline = time.time() + 60
    while "exit 0" not in self.tpu_vm("status").stdout:
      self.assertLess(time.time(), deadline)
      time.sleep(0.5)
    with open(os.path.join(self.dir, "python_args")) as f:
      args = f.read().splitlines()
    self.assertEqual(args, ["JAX_PLATFORMS=tpu", "launch/main.py",
                            "--config=experiments/cifar10.py", f"--workdir={workdir}"])
    with open(os.path.join(self.home, "churn_jax", "logs", "run.log")) as f:
      self.assertIn("training", f.read())
    copies = [c for c in self.calls() if c[1:3] == ["storage", "cp"]]
    host = os.uname().nodename
    self.assertIn(f"gs://bkt/churn_logs/t1/{host}.log", [c[-1] for c in copies])
    self.assertIn(f"gs://bkt/churn_logs/t1/{host}.exit", [c[-1] for c in copies])
    # A failed run reports its status; rerunning the same command starts (resumes) again.
    self.assertEqual(self.tpu_vm("run", f"--workdir={workdir}", FAKE_RC="3").returncode, 0)
    deadline = time.time() + 60
    while "exit 3" not in self.tpu_vm("status").stdout:
      self.assertLess(time.time(), deadline)
      time.sleep(0.5)
    self.assertNotEqual(self.tpu_vm("wait").returncode, 0)


class SlurmTest(absltest.TestCase):

  def test_sbatch_script_runs_one_srun_on_gpus(self):
    tmp = tempfile.mkdtemp(prefix="slurm_")
    _executable(os.path.join(tmp, "srun"),
                '#!/usr/bin/env bash\nprintf "%s\\n" "JAX_PLATFORMS=$JAX_PLATFORMS" "$@" '
                '> "$FAKE_DIR/srun_args"\n')
    env = dict(os.environ, PATH=f"{tmp}:{os.environ['PATH']}", FAKE_DIR=tmp,
               SLURM_SUBMIT_DIR=_ROOT, PYTHON="/venv/bin/python")
    script = os.path.join(_ROOT, "launch", "slurm.sbatch")
    proc = subprocess.run(["bash", script, "--config=experiments/cifar10.py", "--workdir=/w d"],
                          env=env, capture_output=True, text=True, timeout=60)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    with open(os.path.join(tmp, "srun_args")) as f:
      args = f.read().splitlines()
    self.assertEqual(args[0], "JAX_PLATFORMS=cuda")
    self.assertIn("--kill-on-bad-exit=1", args)
    self.assertEqual(args[-4:], ["/venv/bin/python", f"{_ROOT}/launch/main.py",
                                 "--config=experiments/cifar10.py", "--workdir=/w d"])
    proc = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=60)
    self.assertEqual(proc.returncode, 1)
    self.assertEqual(proc.stderr.count("\n"), 1, proc.stderr)
    with open(script) as f:
      self.assertIn("#SBATCH --ntasks-per-node=8", f.read())


if __name__ == "__main__":
  absltest.main()
