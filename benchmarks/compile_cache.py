"""First-step time of the trainer's stacked step with and without the persistent compile cache.

  python benchmarks/compile_cache.py                                  # resnet20 1x1 and 4x2
  python benchmarks/compile_cache.py --cases=lenet5:1x1:vmap,resnet20:4x2:loop --json

Each case runs in three fresh processes, side by side: "off" (no cache), "cold" (an empty
cache directory: compile, then write the entry) and "warm" (a new process on the directory
"cold" filled: load instead of compiling). Reported: the first call of the train step
(compile or load, plus one step), the process's whole wall time, and whether the parameters
after three steps are bitwise equal across the three processes. The cache is churn_jax's
(churn_jax/runtime/compile_cache.py), as `config.compile_cache_dir` sets it in a study.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_CASES = flags.DEFINE_list("cases", ["resnet20:1x1:loop", "resnet20:4x2:loop"],
                           "MODEL:RxM:STRATEGY cases (one CPU device, batch 128 per run).")
_JSON = flags.DEFINE_bool("json", False, "One JSON object per case instead of a table.")
_CHILD = flags.DEFINE_string("child", "", "Internal: run one case in this process.")
_CACHE = flags.DEFINE_string("cache", "", "Internal: the child's cache root ('' = off).")


def _child(case: str, cache: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from churn_jax.runtime import compile_cache, host_devices  # pylint: disable=g-import-not-at-top
  import common  # pylint: disable=g-import-not-at-top  # benchmarks/common.py
  host_devices.configure(1)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # Cache every program.
  compile_cache.configure(cache)
  model, stack, strategy = case.split(":")
  runs, members = (int(v) for v in stack.split("x"))
  train_step, state, batch = common.build_case(model, runs, members, strategy, 128)
  start = time.perf_counter()
  state, _ = train_step(state, batch, {})
  jax.block_until_ready(state)
  first_s = time.perf_counter() - start
  for _ in range(2):
    state, _ = train_step(state, batch, {})
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(state.params):
    digest.update(np.asarray(leaf).tobytes())
  return dict(first_call_s=first_s, params_sha256=digest.hexdigest())


def _run(case: str, cache: str) -> dict:
  start = time.perf_counter()
  out = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f"--child={case}", f"--cache={cache}"],
      capture_output=True, text=True, check=True)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  result["process_s"] = time.perf_counter() - start
  return result


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(_child(_CHILD.value, _CACHE.value)))
    return
  rows = []
  for case in _CASES.value:
    with tempfile.TemporaryDirectory() as root:
      off, cold = _run(case, ""), _run(case, root)
      warm = _run(case, root)
    rows.append(dict(
        case=case, off_first_s=off["first_call_s"], cold_first_s=cold["first_call_s"],
        warm_first_s=warm["first_call_s"], off_process_s=off["process_s"],
        cold_process_s=cold["process_s"], warm_process_s=warm["process_s"],
        bitwise_equal=len({r["params_sha256"] for r in (off, cold, warm)}) == 1))
    if _JSON.value:
      print(json.dumps(rows[-1]), flush=True)
  if not _JSON.value:
    print("| case | first call off / cold / warm (s) | process off / cold / warm (s) "
          "| bitwise equal |\n|---|---|---|---|")
    for r in rows:
      print(f"| {r['case']} | {r['off_first_s']:.1f} / {r['cold_first_s']:.1f} / "
            f"{r['warm_first_s']:.1f} | {r['off_process_s']:.1f} / {r['cold_process_s']:.1f} / "
            f"{r['warm_process_s']:.1f} | {r['bitwise_equal']} |")


if __name__ == "__main__":
  app.run(main)
