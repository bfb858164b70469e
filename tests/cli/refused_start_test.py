"""A multi-process start the runtime refuses (a SLURM task layout that would drop GPUs, bad
CHURN_JAX_* process counts) is one line on stderr, exit 1 and nothing written, from every
launcher: launch/main.py, sweep.py (both modes), table1.py and ablations.py.

The launchers run as processes, all at once; each fails in distributed.maybe_initialize,
before any JAX backend starts (a Python start-up and a JAX import each).
"""

import concurrent.futures
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = "--config=experiments/digits.py:quick"
_LAUNCHERS = {
    "main.py": ["launch/main.py"],
    "sweep.py stacked": ["launch/sweep.py", "--mode=stacked"],
    "sweep.py sequential": ["launch/sweep.py", "--only=00_entropy_beta=0.1"],
    "table1.py": ["launch/table1.py"],
    "ablations.py": ["launch/ablations.py", "--study=topk"],
}
# A SLURM step of 2 tasks on a node with 8 GPUs: neither one per GPU nor one per node.
_SLURM = {"SLURM_JOB_ID": "1234", "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_PROCID": "0",
          "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NTASKS": "4",
          "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
_BY_HAND = {"CHURN_JAX_COORDINATOR": "127.0.0.1:1"}
_CASES = [
    ("slurm_tasks", _SLURM, "SLURM started 2 tasks on this node for its 8 GPUs"),
    ("processes_abc", dict(_BY_HAND, CHURN_JAX_NUM_PROCESSES="abc", CHURN_JAX_PROCESS_ID="0"),
     "CHURN_JAX_NUM_PROCESSES='abc' is not an integer >= 1"),
    ("processes_missing", dict(_BY_HAND, CHURN_JAX_PROCESS_ID="0"),
     "CHURN_JAX_NUM_PROCESSES='' is not an integer >= 1"),
    ("process_id_too_large", dict(_BY_HAND, CHURN_JAX_NUM_PROCESSES="2",
                                  CHURN_JAX_PROCESS_ID="2"),
     "CHURN_JAX_PROCESS_ID=2 is not below CHURN_JAX_NUM_PROCESSES=2"),
]


def _run(argv, extra_env):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "CHURN_JAX_", "CUDA_VISIBLE"))}
  env.update(extra_env, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable] + argv, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)


class RefusedStartTest(absltest.TestCase):

  def test_one_line_exit_1_nothing_written(self):
    tmp = tempfile.mkdtemp()
    # Every launcher meets the SLURM refusal (each launcher's own path from
    # distributed.maybe_initialize to its one line); main.py the by-hand counts too, whose
    # checks are distributed.py's alone (a second launcher re-ran the same lines: 3 processes).
    jobs = [(launcher, case) for launcher in _LAUNCHERS for case in _CASES
            if case[0] == "slurm_tasks" or launcher == "main.py"]
    argv = lambda launcher, case: (_LAUNCHERS[launcher] + [
        QUICK, f"--workdir={tmp}/{launcher.replace(' ', '_')}_{case[0]}"])
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      procs = list(pool.map(lambda j: _run(argv(*j), j[1][1]), jobs))
    for (launcher, (name, _, message)), proc in zip(jobs, procs):
      with self.subTest(f"{launcher} {name}"):
        output = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 1, output[-1500:])
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        self.assertLen(lines, 1, output[-1500:])  # No traceback, no log lines.
        self.assertTrue(lines[0].startswith("error: "), lines[0])
        self.assertIn(message, lines[0])
    self.assertEqual(os.listdir(tmp), [])  # No workdir made.


if __name__ == "__main__":
  absltest.main()
