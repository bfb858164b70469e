"""Two processes agree, within one step, to stop when only one of them gets SIGTERM.

Each process runs a loop of small collective steps (a psum over all 4 devices of both
processes, like a data-parallel training step) and asks `watcher.should_stop(step)` before
each. One process signals itself with SIGTERM at step `signal_at`, before or after asking; the
agreement (runtime/preemption.py) must make both processes stop at the same step, the next
one, and report the same signal. Without a signal both run to the end.
"""

import os
import socket
import subprocess
import sys
import textwrap

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CHILD = textwrap.dedent("""
  import os, signal, sys
  import jax
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", 2)
  port, pid, signal_at, signalled, after = sys.argv[1:2] + [int(a) for a in sys.argv[2:6]]
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                             process_id=pid, heartbeat_timeout_seconds=10)
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from churn_jax.runtime import preemption
  mesh = Mesh(np.array(jax.devices()), ("d",))
  sharding = NamedSharding(mesh, P("d"))
  step_fn = jax.jit(lambda x: x + x.sum(), out_shardings=sharding)
  x = jax.make_array_from_process_local_data(sharding, np.ones(2, np.float32), (4,))
  with preemption.watch() as watcher:
    for step in range(60):
      if pid == signalled and step == signal_at and not after:
        os.kill(os.getpid(), signal.SIGTERM)  # Before asking: this step's flag carries it.
      if watcher.should_stop(step):
        print(f"stopped {step} {watcher.signum}", flush=True)
        break
      if pid == signalled and step == signal_at and after:
        os.kill(os.getpid(), signal.SIGTERM)  # Only this process is told.
      x = step_fn(x) * 0.5
    else:
      print("finished", flush=True)
  jax.block_until_ready(x)
""")


def _run(signal_at, signalled=1, after=1):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, PYTHONPATH=_ROOT, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(port), str(i), str(signal_at),
                             str(signalled), str(after)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  return [p.returncode for p in procs], outs


class PreemptionAgreementTest(absltest.TestCase):

  def test_one_signalled_host_stops_both_at_the_next_step(self):
    rcs, outs = _run(signal_at=17)
    self.assertEqual(rcs, [0, 0], outs)
    last = [o.strip().splitlines()[-1] for o in outs]
    # Signalled after asking at step 17: step 18 carries the flag, read one step later.
    self.assertEqual(last, ["stopped 19 15", "stopped 19 15"], outs)

  def test_signal_to_process_0_before_asking_stops_both_at_the_next_step(self):
    rcs, outs = _run(signal_at=3, signalled=0, after=0)
    self.assertEqual(rcs, [0, 0], outs)
    # Signalled at step 3 before asking: its flag goes into step 3's agreement, which every
    # host reads at step 4 (one step late); process 1 learns which signal it was.
    self.assertEqual([o.strip().splitlines()[-1] for o in outs], ["stopped 4 15"] * 2, outs)

  def test_no_signal_no_stop(self):
    rcs, outs = _run(signal_at=-1)
    self.assertEqual(rcs, [0, 0], outs)
    self.assertEqual([o.strip().splitlines()[-1] for o in outs], ["finished"] * 2, outs)


if __name__ == "__main__":
  absltest.main()
