"""The quick digits study as 2 processes x 4 CPU devices equals 1 process x 8 devices.

The digits split is handed to the studies as an .npz (the same arrays, loaded with numpy
only, no scikit-learn import in each of the ten study processes).

Each study runs launch/main.py in fresh processes: one process with 8 CPU devices, and two
processes with 4 each joined by JAX's multi-process runtime (a coordinator on 127.0.0.1, gloo
collectives), so the same ('run', 'member', 'data') mesh of 8 devices is cut between two
processes. make_mesh (churn_jax/engine/sharding.py) then puts, with 3 runs, the member axis (M=2,
mesh (1, 2, 4)) or the data axis (M=1, mesh (1, 1, 8)) across the processes; with 2 runs
the run axis ((2, 1, 4), (2, 2, 2)). The loop strategy splits only the data axis, the layout
the M=1 methods here cut between the processes; it is tested on 8 devices of one process in
tests/engine/sharding_test.py.

Why not bitwise: with several processes XLA:CPU runs every all-reduce through the gloo
collectives, also those among one process's own devices, and their summation order differs
from the all-reduce of a single process. A gradient summed over more than 2 devices of the
data axis therefore differs in the last bits (measured: at most 7.5e-6 relative on the
metrics of these studies, most about 1e-7); a sum of two is exact either way. So the results
are bitwise equal where the data axis has at most 2 devices (asserted: co-distillation on
mesh (2, 2, 2)); elsewhere counts (accuracy, churn) are equal and floats agree to 5e-5
relative + 1e-7 absolute.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import numpy as np

from churn_jax.engine import sharding
from tests import testing

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_FAULT = os.path.join(_ROOT, "tests", "runtime", "fault_main.py")
_DATA = None  # Set by setUpModule: the digits as an .npz (_digits_npz).
# Every method kind: baseline, co-distillation, an ensemble, a two-stage distillation (its
# teacher is ensemble2), anti-distillation and stale peers (refreshed every 2 steps).
_ALL_KINDS = "baseline,codistill,ensemble2,ens_distill,anti_distill,codistill_ce_stale"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _digits_npz(folder):
  """The digits split of churn_jax/data/digits.py as an .npz: the study processes load it
  with numpy alone instead of each importing scikit-learn (~1 CPU-s apiece)."""
  from churn_jax.data import digits  # pylint: disable=g-import-not-at-top
  data = digits.load_digits()
  path = os.path.join(folder, "digits.npz")
  np.savez(path, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
           y_test=data.y_test)
  return path


def _launch(workdir, runs, processes, steps=4, strategy="vmap", methods=_ALL_KINDS,
            port=None, faults=None, checkpoint_every=2):
  """Starts the study as `processes` processes (8 CPU devices in all); returns their Popens.

  `faults` maps a process index to the fault fault_main.py injects into it alone.
  """
  args = [os.path.join(_ROOT, "launch", "main.py"),
          f"--config={_ROOT}/experiments/digits.py:quick,runs={runs}", f"--workdir={workdir}",
          f"--config.data.npz_path={_DATA}",
          f"--config.methods={methods}", f"--config.strategy={strategy}",
          f"--config.num_train_steps={steps}", "--config.model.hidden=(16,)",
          f"--config.cpu_devices={8 // processes}",
          f"--config.checkpoint_every_steps={checkpoint_every}",
          "--config.log_every_steps=2", "--config.progress=False", "--config.plots=False",
          "--config.method_configs.codistill_ce_stale.stale_refresh_steps=2"]
  env = dict(os.environ, PYTHONPATH=_ROOT, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = testing.child_xla_flags()
  env.pop("CHURN_JAX_TEST_FAULT", None)
  port = port or _free_port()
  procs = []
  for i in range(processes):
    if processes > 1:
      env.update(CHURN_JAX_COORDINATOR=f"127.0.0.1:{port}", CHURN_JAX_PROCESS_ID=str(i),
                 CHURN_JAX_NUM_PROCESSES=str(processes), CHURN_JAX_HEARTBEAT_TIMEOUT="10")
    log = open(f"{workdir}.{processes}.{i}.log", "w")
    fault = (faults or {}).get(i)
    main = [_FAULT] if fault else args[:1]
    procs.append(subprocess.Popen([sys.executable] + main + args[1:],
                                  env=dict(env, **({"CHURN_JAX_TEST_FAULT": fault} if fault
                                                   else {})),
                                  stdout=log, stderr=subprocess.STDOUT))
    log.close()
  return procs


def _wait(test, procs, workdir, timeout=1800):  # Generous: the machine may be shared.
  for i, p in enumerate(procs):
    rc = p.wait(timeout=timeout)
    with open(f"{workdir}.{len(procs)}.{i}.log") as f:
      test.assertEqual(rc, 0, f"process {i} of {len(procs)}:\n{f.read()[-3000:]}")


def _methods(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    methods = json.load(f)["methods"]
  return {k: {m: v for m, v in e.items() if m != "fingerprint"} for k, e in methods.items()}


def _differences(a, b, path=""):
  """(path, a, b) of every leaf where the two result trees differ (bitwise)."""
  if isinstance(a, dict):
    assert a.keys() == b.keys(), (path, a.keys(), b.keys())
    return [d for k in a for d in _differences(a[k], b[k], f"{path}/{k}")]
  if isinstance(a, list):
    assert len(a) == len(b), path
    return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
  return [] if a == b else [(path, a, b)]


def setUpModule():
  global _DATA
  _DATA = _digits_npz(tempfile.mkdtemp(prefix="multihost_data_"))


class MultiHostTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp(prefix="multihost_")

  def assert_same_results(self, multi, single, bitwise=()):
    diffs = _differences(_methods(multi), _methods(single))
    for name in bitwise:  # Methods whose data axis has at most 2 devices.
      self.assertEqual([d for d in diffs if d[0].startswith(f"/{name}/")], [])
    for path, a, b in diffs:
      if "/predictions/" in path:  # The file's sha256 differs exactly when its floats do.
        continue
      self.assertIsInstance(a, float, path)  # Counts, names and costs are always equal.
      self.assertNotRegex(path, r"/(accuracy|churn)/", "a prediction flipped")
      self.assertLessEqual(abs(a - b), 5e-5 * abs(b) + 1e-7, path)

  def test_layouts_cross_processes(self):
    # The layouts the studies below cut between the two processes (4 devices each): a
    # process holds a contiguous half of the mesh, so its first split axis crosses.
    self.assertEqual(sharding.mesh_shape(8, 3, 1, 64), (1, 1, 8))  # data across
    self.assertEqual(sharding.mesh_shape(8, 3, 2, 64), (1, 2, 4))  # members across
    self.assertEqual(sharding.mesh_shape(8, 2, 1, 64), (2, 1, 4))  # runs across
    self.assertEqual(sharding.mesh_shape(8, 2, 2, 64), (2, 2, 2))  # runs across
    self.assertEqual(sharding.mesh_shape(8, 2, 2, 64, "loop"), (1, 1, 8))  # data across

  def test_every_method_kind_and_layout_equals_one_process(self):
    # Every method kind with vmap over 3 runs: members (M=2) or data (M=1) across processes.
    work = {k: os.path.join(self.tmp, k) for k in ("vmap1", "vmap2")}
    # One checkpoint per method, the final one (orbax saves across processes are collectives).
    procs = {"vmap1": _launch(work["vmap1"], 3, 1, checkpoint_every=4),
             "vmap2": _launch(work["vmap2"], 3, 2, checkpoint_every=4)}
    for name, p in procs.items():
      _wait(self, p, work[name])
    self.assertEqual(set(_methods(work["vmap2"])), set(_ALL_KINDS.split(",")))
    self.assert_same_results(work["vmap2"], work["vmap1"])
    # Checkpoints written by both processes through orbax: the final step of every method.
    for name in _ALL_KINDS.split(","):
      ckpt = [d for d in os.listdir(os.path.join(work["vmap2"], "checkpoints"))
              if d.startswith(name + "-")]
      self.assertLen(ckpt, 1, name)
      self.assertIn("4", os.listdir(os.path.join(work["vmap2"], "checkpoints", ckpt[0])))

  def test_stop_kill_and_unreadable_checkpoint_then_identical_results(self):
    # 2 runs: the run axis crosses processes. Three faults in turn, each injected into process
    # 1 only at a known checkpoint (fault_main.py), then the results must equal one process's:
    # (1) SIGTERM: both stop at the same step with a checkpoint (runtime/preemption.py);
    # (2) SIGKILL: process 0 must fail soon, saying why, not hang; (3) the newest checkpoint
    # unreadable: both resume from the same older step (runtime/checkpoint.py).
    # Checkpoints every 2 steps: co-distillation saves 2, 4 (the stop), 6 (then the kill).
    steps, single, multi = 8, os.path.join(self.tmp, "one"), os.path.join(self.tmp, "two")
    methods = "baseline,codistill"
    # The reference needs no checkpoint but its final one.
    reference = _launch(single, 2, 1, steps=steps, methods=methods, checkpoint_every=steps)
    procs = _launch(multi, 2, 2, steps=steps, methods=methods,
                    faults={1: "sigterm@codistill:2"})
    rcs = [p.wait(timeout=600) for p in procs]
    logs = [self._log(multi, i) for i in range(2)]
    self.assertIn(f"signal {int(signal.SIGTERM)} to this process at step 2", logs[1])
    self.assertEqual(rcs, [143, 143], logs[0][-2000:] + logs[1][-2000:])
    stopped = [re.findall(r"stopped at step (\d+) of codistill, checkpoint saved", log)
               for log in logs]
    self.assertLen(stopped[0], 1, logs[0][-2000:])
    self.assertEqual(stopped[0], stopped[1])
    self.assertGreater(int(stopped[0][0]), 2)  # Stopped while training, past the signal.
    self.assertLess(int(stopped[0][0]), 6)  # Within the agreement's latency, before step 6.
    self.assertIn(stopped[0][0], os.listdir(self._codistill_dir(multi)))

    procs = _launch(multi, 2, 2, steps=steps, methods=methods, faults={1: "sigkill@codistill:6"})
    self.assertEqual(procs[1].wait(timeout=600), -signal.SIGKILL, self._log(multi, 1)[-2000:])
    killed_at = time.time()
    rc = procs[0].wait(timeout=240)
    waited = time.time() - killed_at
    log = self._log(multi, 0)
    self.assertIn(f"method codistill: resumed from step {stopped[0][0]}", log)
    self.assertNotEqual(rc, 0, log[-2000:])
    self.assertLess(waited, 120, log[-2000:])  # Heartbeat timeout 10 s, plus a loaded machine.
    # One line says why: main.py's "error: ..." when Python sees the failure first (a
    # collective with the dead peer), else JAX's fatal log from the heartbeat check.
    reasons = [line for line in log.splitlines() if line.startswith("error: ") or
               "Terminating process because the JAX distributed service detected" in line]
    self.assertTrue(reasons, log[-2000:])

    newest = max(int(s) for s in os.listdir(self._codistill_dir(multi)) if s.isdigit())
    self.assertGreater(newest, int(stopped[0][0]))  # Written by the killed launch.
    _wait(self, _launch(multi, 2, 2, steps=steps, methods=methods, faults={1: "unreadable"}),
          multi)
    logs = [self._log(multi, i) for i in range(2)]
    for log in logs:
      self.assertIn("method baseline: finished earlier, results reused", log)
      self.assertRegex(log, rf"checkpoint \S+/{newest} is rejected: ")
    self.assertIn(f"/{newest} is rejected: process 1 could not read it", logs[0])
    resumed = [re.findall(r"method codistill: resumed from step (\d+)", log) for log in logs]
    self.assertLen(resumed[0], 1, logs[0][-2000:])
    self.assertEqual(resumed[0], resumed[1])
    self.assertLess(int(resumed[0][0]), newest)
    _wait(self, reference, single)
    self.assert_same_results(multi, single, bitwise=["codistill"])  # Mesh (2, 2, 2).

  @staticmethod
  def _log(workdir, i):
    with open(f"{workdir}.2.{i}.log") as f:
      return f.read()

  @staticmethod
  def _codistill_dir(workdir):
    root = os.path.join(workdir, "checkpoints")
    names = [d for d in os.listdir(root) if d.startswith("codistill-")]
    assert len(names) == 1, names
    return os.path.join(root, names[0])


if __name__ == "__main__":
  absltest.main()
