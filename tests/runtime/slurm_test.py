"""SLURM: a single task never silently drops GPUs; srun gets --cpus-per-task and an early
SIGTERM; every launcher initialises the multi-process runtime."""

import os
import stat
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from churn_jax.runtime import distributed

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SLURM = {"SLURM_JOB_ID": "1234", "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_PROCID": "0",
          "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


class LocalDevicesTest(parameterized.TestCase):

  @parameterized.parameters(
      # (tasks on the step, tasks per node, visible GPUs, expected local_device_ids)
      ("1", "1", "0,1,2,3,4,5,6,7", list(range(8))),    # srun --pty on 8 GPUs: all of them
      ("2", "1(x2)", "0,1,2,3", [0, 1, 2, 3]),          # one task per node, 2 nodes
      ("16", "8(x2)", "0,1,2,3,4,5,6,7", None),          # one task per GPU: JAX's default
      ("1", "1", "0", None),                              # one GPU
      ("1", None, "0,1", [0, 1]),                         # no per-node count: SLURM_NTASKS
  )
  def test_devices(self, ntasks, per_node, visible, expected):
    env = dict(_SLURM, SLURM_NTASKS=ntasks, CUDA_VISIBLE_DEVICES=visible)
    if per_node:
      env["SLURM_STEP_TASKS_PER_NODE"] = per_node
    self.assertEqual(distributed.slurm_local_device_ids(env), expected)

  def test_gpus_from_slurm_when_cuda_visible_devices_is_unset(self):
    env = dict(_SLURM, SLURM_NTASKS="1", SLURM_STEP_TASKS_PER_NODE="1", SLURM_GPUS_ON_NODE="4")
    self.assertEqual(distributed.slurm_local_device_ids(env), [0, 1, 2, 3])

  def test_other_task_counts_are_an_error(self):
    env = dict(_SLURM, SLURM_NTASKS="6", SLURM_STEP_TASKS_PER_NODE="2,4", SLURM_NODEID="1",
               CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7")
    with self.assertRaisesRegex(ValueError, "4 tasks on this node for its 8 GPUs"):
      distributed.slurm_local_device_ids(env)

  def test_maybe_initialize_passes_the_devices_to_jax(self):
    calls = []
    original = distributed.jax.distributed.initialize
    distributed.jax.distributed.initialize = lambda **kw: calls.append(kw)
    env = dict(_SLURM, SLURM_NTASKS="1", SLURM_STEP_TASKS_PER_NODE="1",
               CUDA_VISIBLE_DEVICES="0,1,2")
    saved = dict(os.environ)
    try:
      os.environ.update(env)  # JAX's detector reads os.environ.
      self.assertTrue(distributed.maybe_initialize(env))
    finally:
      distributed.jax.distributed.initialize = original
      os.environ.clear()
      os.environ.update(saved)
    self.assertEqual(calls, [{"local_device_ids": [0, 1, 2]}])


class SbatchTest(absltest.TestCase):

  def test_srun_gets_cpus_per_task_and_the_job_an_early_sigterm(self):
    tmp = tempfile.mkdtemp()
    fake = os.path.join(tmp, "srun")
    with open(fake, "w") as f:
      f.write(f'#!/bin/sh\necho "$@" > {tmp}/srun.args\n')
    os.chmod(fake, stat.S_IRWXU)
    env = dict(os.environ, PATH=f"{tmp}:{os.environ['PATH']}", CHURN_JAX_DIR=_ROOT,
               PYTHON="python3", SLURM_CPUS_PER_TASK="8")
    script = os.path.join(_ROOT, "launch", "slurm.sbatch")
    subprocess.run(["bash", script, "--config=c.py", "--workdir=w"], env=env, check=True)
    with open(f"{tmp}/srun.args") as f:
      args = f.read().split()
    self.assertIn("--cpus-per-task=8", args)
    self.assertEqual(args[-3:], [f"{_ROOT}/launch/main.py", "--config=c.py", "--workdir=w"])
    with open(script) as f:
      directives = [l.split()[1] for l in f if l.startswith("#SBATCH")]
    signal = [d for d in directives if d.startswith("--signal=")]
    self.assertEqual(signal, ["--signal=TERM@120"])


class EntryPointsTest(parameterized.TestCase):

  @parameterized.parameters("main.py", "sweep.py", "table1.py")
  def test_launcher_initialises_the_runtime(self, launcher):
    # CHURN_JAX_DISTRIBUTED=1 with no cluster: jax.distributed.initialize() is called and
    # fails for want of a coordinator, which shows the launcher calls it before training.
    tmp = tempfile.mkdtemp()
    env = dict(os.environ, PYTHONPATH=_ROOT, JAX_PLATFORMS="cpu", CHURN_JAX_DISTRIBUTED="1")
    for k in list(env):
      if k.startswith("SLURM_") or k.startswith("CHURN_JAX_COORD"):
        env.pop(k)
    # sweep.py --mode=stacked: the default sequential mode refuses the paper's stage-2 entries
    # (they need stage 1's selection) before it would start the runtime.
    extra = ["--mode=stacked"] if launcher == "sweep.py" else []
    proc = subprocess.run(
        [sys.executable, os.path.join(_ROOT, "launch", launcher),
         f"--config={_ROOT}/experiments/digits.py:quick", f"--workdir={tmp}/w"] + extra,
        env=env, capture_output=True, text=True, timeout=120)
    self.assertNotEqual(proc.returncode, 0, proc.stdout[-1000:])
    self.assertIn("coordinator_address should be defined", proc.stderr, proc.stderr[-2000:])
    self.assertFalse(os.path.exists(f"{tmp}/w/results.json"))


if __name__ == "__main__":
  absltest.main()
