"""Two processes agree, within one step, to stop when only one of them gets SIGTERM.

Each process runs a loop of small collective steps (a psum over all 4 devices of both
processes, like a data-parallel training step) and asks `watcher.should_stop(step)` before
each. One process signals itself with SIGTERM at step `signal_at`, before or after asking; the
agreement (runtime/preemption.py) must make both processes stop at the same step, the next
one, and report the same signal. Without a signal both run to the end.

The three scenarios run one after another in the same two processes, each in its own
`preemption.watch()` (a study's lifetime), and each prints its own outcome: one launch instead
of three (each costs ~3 s of imports and start-up). Both processes run every scenario to
completion, so the outcome of one cannot leak into the next; processes that disagree end up
in unmatched collectives, and the timeout then kills both and the test shows their lines.
"""

import os
import socket
import subprocess
import sys
import textwrap

from absl.testing import absltest

from tests import testing

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (name, signal_at, signalled process, signal after asking); -1: no signal.
_SCENARIOS = (("after", 17, 1, 1), ("before", 3, 0, 0), ("none", -1, 1, 1))

_CHILD = textwrap.dedent("""
  import os, signal, sys
  import jax
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", 2)
  port, pid, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                             process_id=pid, heartbeat_timeout_seconds=10)
  import numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from churn_jax.runtime import preemption
  mesh = Mesh(np.array(jax.devices()), ("d",))
  sharding = NamedSharding(mesh, P("d"))
  step_fn = jax.jit(lambda x: x + x.sum(), out_shardings=sharding)
  for scenario in scenarios:
    name, signal_at, signalled, after = scenario.split(":")
    signal_at, signalled, after = int(signal_at), int(signalled), int(after)
    x = jax.make_array_from_process_local_data(sharding, np.ones(2, np.float32), (4,))
    with preemption.watch() as watcher:
      for step in range(60):
        if pid == signalled and step == signal_at and not after:
          os.kill(os.getpid(), signal.SIGTERM)  # Before asking: this step's flag carries it.
        if watcher.should_stop(step):
          print(f"{name}: stopped {step} {watcher.signum}", flush=True)
          break
        if pid == signalled and step == signal_at and after:
          os.kill(os.getpid(), signal.SIGTERM)  # Only this process is told.
        x = step_fn(x) * 0.5
      else:
        print(f"{name}: finished", flush=True)
    jax.block_until_ready(x)
""")


def _run():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, PYTHONPATH=_ROOT, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = testing.child_xla_flags()
  scenarios = [":".join(map(str, s)) for s in _SCENARIOS]
  procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(port), str(i)] + scenarios,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for i in range(2)]
  try:
    outs = [p.communicate(timeout=300)[0] for p in procs]
  except subprocess.TimeoutExpired:  # Processes stuck in unmatched collectives: show why.
    for p in procs:
      p.kill()
    outs = [p.communicate()[0] for p in procs]
  return [p.returncode for p in procs], outs


class PreemptionAgreementTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.rcs, cls.outs = _run()

  def outcome(self, name):
    """Each process's line for scenario `name`."""
    self.assertEqual(self.rcs, [0, 0], self.outs)
    lines = [[l for l in o.splitlines() if l.startswith(name + ": ")] for o in self.outs]
    for found in lines:
      self.assertLen(found, 1, self.outs)
    return [found[0][len(name) + 2:] for found in lines]

  def test_one_signalled_host_stops_both_at_the_next_step(self):
    # Signalled after asking at step 17: step 18 carries the flag, read one step later.
    self.assertEqual(self.outcome("after"), ["stopped 19 15"] * 2, self.outs)

  def test_signal_to_process_0_before_asking_stops_both_at_the_next_step(self):
    # Signalled at step 3 before asking: its flag goes into step 3's agreement, which every
    # host reads at step 4 (one step late); process 1 learns which signal it was.
    self.assertEqual(self.outcome("before"), ["stopped 4 15"] * 2, self.outs)

  def test_no_signal_no_stop(self):
    self.assertEqual(self.outcome("none"), ["finished"] * 2, self.outs)


if __name__ == "__main__":
  absltest.main()
