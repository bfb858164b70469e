"""CPU time of a test-sized method loss and its gradient: eager against jit, by XLA options.

  python benchmarks/loss_compile_cost.py            # 3 repeats of each case
  python benchmarks/loss_compile_cost.py --repeats=1

What the loss tests pay (tests/fast_jit.py): three methods (anti_distill, codistill, mutual;
3 members, batch 6, 4 classes), each loss and its gradient computed once. Each case runs in a
fresh process (an eager primitive compiled once is cached for the rest of a process), the
persistent compile cache off. Cases: "eager" (one program per primitive and shape), "jit"
(one program per method, XLA:CPU defaults), "jit_step" (the train step's options,
engine/step.py: compiler_options) and "jit_fast" (tests/fast_jit.py: CPU_OPTIONS). Printed per
case as it finishes: process CPU seconds (user + system) of the computations alone, the
programs compiled, and the ratio to "eager" (median of the repeats).
"""

import json
import os
import resource
import statistics
import subprocess
import sys

from absl import app, flags

_REPEATS = flags.DEFINE_integer("repeats", 3, "Fresh processes per case.")
_CHILD = flags.DEFINE_string("child", "", "Internal: run one case in this process.")

CASES = ("eager", "jit", "jit_step", "jit_fast")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def run_case(case):
  """(CPU seconds, programs compiled) of the three losses and gradients in this process."""
  sys.path.insert(0, _ROOT)
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from churn_jax import methods  # pylint: disable=g-import-not-at-top
  from churn_jax.engine import step  # pylint: disable=g-import-not-at-top
  from tests import fast_jit  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_enable_compilation_cache", False)
  compiled = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, secs, **kw: compiled.append(secs)
      if event == "/jax/core/compile/backend_compile_duration" else None)
  wrap = {"eager": lambda f: f, "jit": jax.jit,
          "jit_step": lambda f: jax.jit(f, compiler_options=step.compiler_options()),
          "jit_fast": fast_jit.jit}[case]
  rng = np.random.default_rng(0)
  z = rng.normal(size=(3, 6, 4)).astype(np.float32)
  y = rng.integers(0, 4, 6)
  jax.block_until_ready(jax.numpy.zeros(1) + 1)  # Backend start, outside the timing.
  compiled.clear()
  start = _cpu()
  for kind in ("anti_distill", "codistill", "mutual"):
    method = methods.build(kind, ml_collections.ConfigDict(
        dict(kind=kind, num_members=3, beta=0.7)), 10)
    jax.block_until_ready(wrap(jax.value_and_grad(method.loss, has_aux=True))(z, y, 0))
  return _cpu() - start, len(compiled)


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(run_case(_CHILD.value)))
    return
  base = None
  for case in CASES:
    runs = []
    for _ in range(_REPEATS.value):
      out = subprocess.run([sys.executable, __file__, f"--child={case}"], check=True,
                           capture_output=True, text=True).stdout
      runs.append(json.loads(out.strip().splitlines()[-1]))
    cpu = statistics.median(r[0] for r in runs)
    base = cpu if base is None else base
    print(f"{case:9s} cpu_s {cpu:6.2f} (runs {', '.join(f'{r[0]:.2f}' for r in runs)})  "
          f"programs {runs[0][1]:4d}  ratio_to_eager {cpu / base:5.2f}", flush=True)


if __name__ == "__main__":
  app.run(main)
