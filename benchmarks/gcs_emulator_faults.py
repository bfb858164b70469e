"""How often an orbax save to the Cloud Storage emulator fails, per emulator and setting.

  nice -n 10 python benchmarks/gcs_emulator_faults.py                  # 4 cases x 100 saves
  nice -n 10 python benchmarks/gcs_emulator_faults.py --saves=40 --cases=stock,wrapped

A measurement, not a test: one line per case as it finishes. Each case starts an emulator
(tests/gcs_emulator.py: `stock` is gcp-storage-emulator as installed, `wrapped` answers like
Cloud Storage where tensorstore depends on it: generation headers on downloads, generation
preconditions honoured) and one child process that saves churn_jax's stacked TrainState
(benchmarks/common.py: MLP, 3 runs, one member) through churn_jax's own MethodCheckpointer
(churn_jax/runtime/checkpoint.py) to gs://BUCKET/..., one train step between saves, waiting
for each save as the study does after its last one. Every `--saves_per_dir` saves go to a
fresh directory and a fresh manager, as a new study's would (the CI failure was the first
save of a fresh study); max_to_keep=2 deletes old steps as the study does. `+conc1` cases
set TENSORSTORE_GCS_REQUEST_CONCURRENCY=1 (one request at a time to the bucket).

A failed save is counted, its first line kept, and the next save goes to a fresh manager on
the same directory (as a rerun would); after each failure and at the end the newest step is
restored and compared bitwise with what was saved, so a fault that leaves a bad checkpoint
behind shows as `bad_restores`. Every fault's whole text goes to $TMPDIR/gcs_faults_CASE.log.

Measured 2026-12-05 on an AMD EPYC, 2 cores shared with other jobs (load 2.5-4.8):
  --saves=100 (all four cases, 727 s):  stock 2/100, stock+conc1 2/100 ("Malformed
      StorageGeneration", all of them), wrapped 0/100, wrapped+conc1 0/100
  --saves=300 --cases=stock (1313 s): 3/300;  --cases=wrapped,wrapped+conc1 (2308 s): 0/300,
      0/300;  bad restores 0 everywhere.
(The 100-save wrapped cases ran before the wrapper answered a read of a missing object
with ifGenerationNotMatch by 404 instead of 412; a fourth run, wrapped at 300 saves, also
under that earlier version: 0/300.) Either half of the wrapper alone (x-goog-generation
line removed, or preconditions ignored; edited by hand) gave 0/100 each, weak evidence at a
stock rate near 1.5% (0/100 then has odds ~0.2): a tensorstore read stamps generation 0 only
when it gets bytes without a generation, which the 304 or the header each prevent.
"""

import collections
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BUCKET = "churn-stress"
_CASES = flags.DEFINE_list("cases", ["stock", "stock+conc1", "wrapped", "wrapped+conc1"],
                           "EMULATOR[+conc1] cases; EMULATOR is stock or wrapped.")
_SAVES = flags.DEFINE_integer("saves", 100, "Saves per case.")
_PER_DIR = flags.DEFINE_integer("saves_per_dir", 5, "Saves per directory (a study's run).")
_CHILD = flags.DEFINE_string("child", "", "Internal: save to this gs:// prefix.")


def _cause(error: Exception) -> str:
  """The innermost message of a tensorstore error chain ("A: B: C [tensorstore_spec=...]" -> C)."""
  text = " ".join(str(error).split())
  print(f"fault: {text}", file=sys.stderr, flush=True)
  return text.split(" [tensorstore_spec=")[0].rsplit(": ", 1)[-1][:120] or type(error).__name__


def _child(prefix: str) -> dict:
  # pylint: disable=g-import-not-at-top  # The env (emulator URLs) is set by the parent.
  import jax
  import numpy as np
  from churn_jax.runtime import checkpoint
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import common  # benchmarks/common.py
  train_step, state, batch = common.build_case("mlp", 3, 1, "loop", 64)
  faults, errors, bad_restores, saves = 0, collections.Counter(), 0, 0
  ckpt, directory, saved = None, None, {}

  def restored_equal(ckpt, step, target):
    got, at = checkpoint.MethodCheckpointer(ckpt.directory, 1).restore_latest(target)
    if at != step:
      return False
    same = jax.tree_util.tree_map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                                  got, saved[step])
    return all(jax.tree_util.tree_leaves(same))

  for i in range(_SAVES.value):
    if i % _PER_DIR.value == 0:
      if ckpt is not None:
        ckpt.close()
      directory = f"{prefix}/dir{i // _PER_DIR.value}"
      ckpt = checkpoint.MethodCheckpointer(directory, 1)
    state, _ = train_step(state, batch, {})
    step = int(state.step)
    jax.block_until_ready(state)
    saved[step] = jax.tree_util.tree_map(np.asarray, state)
    saves += 1
    try:
      ckpt.save(step, state)
      ckpt.wait()
    except Exception as e:  # pylint: disable=broad-except  # Counted, then resumed.
      faults += 1
      errors[_cause(e)] += 1
      try:
        ckpt.close()
      except Exception:  # pylint: disable=broad-except  # Its save already failed.
        pass
      ckpt = checkpoint.MethodCheckpointer(directory, 1)
      latest = ckpt.latest_step()
      if latest is not None and not restored_equal(ckpt, latest, state):
        bad_restores += 1
  ckpt.close()
  latest = ckpt.latest_step()
  if latest is None or not restored_equal(ckpt, latest, state):
    bad_restores += 1
  return {"saves": saves, "faults": faults, "bad_restores": bad_restores,
          "errors": dict(errors)}


def _case(name: str) -> dict:
  sys.path.insert(0, _ROOT)
  from tests import gcs_emulator  # pylint: disable=g-import-not-at-top
  kind, _, option = name.partition("+")
  if kind not in ("stock", "wrapped") or option not in ("", "conc1"):
    raise ValueError(f"unknown case {name!r}")
  proc, url = gcs_emulator.start(_BUCKET, stock=kind == "stock")
  try:
    env = dict(os.environ, PYTHONPATH=_ROOT, JAX_PLATFORMS="cpu", STORAGE_EMULATOR_HOST=url,
               TENSORSTORE_GCS_HTTP_URL=url, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")
    env.pop("TENSORSTORE_GCS_REQUEST_CONCURRENCY", None)
    if option == "conc1":
      env["TENSORSTORE_GCS_REQUEST_CONCURRENCY"] = "1"
    env.pop("XLA_FLAGS", None)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--child=gs://{_BUCKET}/{name}",
         f"--saves={_SAVES.value}", f"--saves_per_dir={_PER_DIR.value}"],
        env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
  finally:
    proc.kill()
    proc.wait()
  with open(os.path.join(tempfile.gettempdir(), f"gcs_faults_{name}.log"), "w") as f:
    f.write(out.stderr)  # Every fault's whole text.
  if out.returncode:
    return {"case": name, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
  result = json.loads(out.stdout.strip().splitlines()[-1])
  return dict(case=name, wall_s=round(wall, 1), **result)


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(_child(_CHILD.value)), flush=True)
    return
  for name in _CASES.value:
    r = _case(name)
    if "error" in r:
      print(f"{name:14s} failed: {r['error']}", flush=True)
      continue
    print(f"{name:14s} faults {r['faults']:3d} / {r['saves']} saves  bad restores "
          f"{r['bad_restores']}  {r['wall_s']:6.1f} s  {json.dumps(r['errors'])}", flush=True)


if __name__ == "__main__":
  app.run(main)
