"""launch/main.py with a fault injected into this process only (multihost_test.py, faults_test.py,
gcs_emulator_test.py).

CHURN_JAX_TEST_FAULT names the fault:
  unreadable: the newest step of every checkpoint directory cannot be read here, as after a
    read error on this host only.
  sigterm@METHOD:STEP: SIGTERM to this process right after it starts saving METHOD's
    checkpoint of STEP, as a preemption notice that reaches one host only.
  sigint@METHOD:STEP: the same with SIGINT (Ctrl-C).
  sigkill@METHOD:STEP: SIGKILL to this process once METHOD's checkpoint of STEP is written, as
    a host that dies.
CHURN_JAX_TEST_FAULT_WAIT=PATH delays a signal until PATH exists (the test lets the process
die once it has checked what it needs while the process lives, e.g. its workdir lock).
The process signals itself at a known step, so the test needs neither a long study nor
polling to hit training while it runs.
"""

import os
import signal
import sys
import time

from churn_jax.cli import app
from churn_jax.runtime import checkpoint

_check = checkpoint.MethodCheckpointer._unreadable  # pylint: disable=protected-access
_save = checkpoint.MethodCheckpointer.save
_injected = set()


def _unreadable_newest(self, step):
  """The first step asked about per checkpoint directory (the newest) is unreadable."""
  if self.directory not in _injected:
    _injected.add(self.directory)
    return "unreadable (injected on this host only)"
  return _check(self, step)


def _signalling_save(signum, method, at_step):
  def save(self, step, state):
    _save(self, step, state)
    if step == at_step and os.path.basename(self.directory).startswith(method + "-"):
      if signum == signal.SIGKILL:
        self.wait()  # The checkpoint is complete, then the host dies.
      go = os.environ.get("CHURN_JAX_TEST_FAULT_WAIT")
      while go and not os.path.exists(go):
        time.sleep(0.05)
      print(f"fault_main: signal {signum} to this process at step {step}", flush=True)
      os.kill(os.getpid(), signum)
  return save


def _inject(fault):
  if fault == "unreadable":
    checkpoint.MethodCheckpointer._unreadable = _unreadable_newest  # pylint: disable=protected-access
    return
  kind, _, where = fault.partition("@")
  method, _, step = where.partition(":")
  signum = {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT, "sigkill": signal.SIGKILL}[kind]
  checkpoint.MethodCheckpointer.save = _signalling_save(signum, method, int(step))


if __name__ == "__main__":
  _inject(os.environ["CHURN_JAX_TEST_FAULT"])
  sys.argv[0] = "launch/main.py"
  app.run()
