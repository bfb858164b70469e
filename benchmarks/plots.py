"""regenerate.write_plots (a study's plots/) of this tree against an older one.

  python benchmarks/plots.py                      # against --ref=87012ad, 3 alternating repeats
  python benchmarks/plots.py --workdir=WD --ref=COMMIT --repeats=5

Each case is a fresh process (the study pays the first call: matplotlib's import and font
loading) that draws the plots of one finished study twice, first and warm, with
churn_jax/study/regenerate.py and churn_jax/outputs/plots.py either as in this tree ("new")
or as at --ref ("ref", read with `git show`); everything else is this tree's. CPU seconds
(time.process_time) are the measure: wall time is noise on a shared machine. The cases
alternate (ref, new, ref, ...) so load hits both alike; each line is printed as its case
finishes, then the ratios of the medians. Without --workdir, a digits quick study
(baseline, codistill; experiments/digits.py:quick) is trained first into a temporary folder.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types

from absl import app, flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKDIR = flags.DEFINE_string("workdir", "", "A finished study; empty: train digits quick.")
_REF = flags.DEFINE_string("ref", "87012ad", "Commit whose regenerate.py and plots.py are 'ref'.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Alternating repeats of both cases.")
_CHILD = flags.DEFINE_string("child", "", "Internal: 'ref' or 'new', time one case.")
_OUT = flags.DEFINE_string("out", "", "Internal: a folder for the child's plots/.")


def _module_at_ref(path: str) -> types.ModuleType:
  """The module in file `path` as it was at --ref (its imports: this tree's modules)."""
  source = subprocess.run(["git", "-C", _ROOT, "show", f"{_REF.value}:{path}"], check=True,
                          capture_output=True, text=True).stdout
  module = types.ModuleType("ref_" + os.path.basename(path)[:-3])
  exec(compile(source, path, "exec"), module.__dict__)  # pylint: disable=exec-used
  return module


def _child(which: str, workdir: str, out: str) -> None:
  from churn_jax.study import regenerate  # pylint: disable=g-import-not-at-top
  if which == "ref":
    regenerate = _module_at_ref("churn_jax/study/regenerate.py")
    regenerate.plots = _module_at_ref("churn_jax/outputs/plots.py")
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  os.makedirs(out, exist_ok=True)
  for name in ("curves", "predictions"):  # write_plots reads them relative to the workdir.
    os.symlink(os.path.join(workdir, name), os.path.join(out, name))
  times = {}
  for key in ("first", "warm"):
    cpu, wall = time.process_time(), time.perf_counter()
    regenerate.write_plots(out, results)
    times[key] = (time.process_time() - cpu, time.perf_counter() - wall)
  print(json.dumps(times))


def _train(workdir: str) -> None:
  sys.path.insert(0, _ROOT)
  from churn_jax.study import train  # pylint: disable=g-import-not-at-top
  from experiments import digits  # pylint: disable=g-import-not-at-top
  config = digits.get_config("quick")
  config.methods = "baseline,codistill"
  config.progress = False
  config.plots = False
  train.train_and_evaluate(config, workdir)


def main(argv):
  del argv
  if _CHILD.value:
    _child(_CHILD.value, _WORKDIR.value, _OUT.value)
    return
  with tempfile.TemporaryDirectory() as tmp:
    workdir = _WORKDIR.value
    if not workdir:
      workdir = os.path.join(tmp, "study")
      _train(workdir)
      print(f"trained a digits quick study in {workdir}", flush=True)
    env = dict(os.environ, PYTHONPATH=_ROOT)
    seen = {"ref": [], "new": []}
    for repeat in range(_REPEATS.value):
      for which in ("ref", "new"):
        out = os.path.join(tmp, f"{which}{repeat}")
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), f"--child={which}",
             f"--workdir={workdir}", f"--out={out}", f"--ref={_REF.value}"],
            env=env, capture_output=True, text=True, check=True)
        times = json.loads(proc.stdout.strip().splitlines()[-1])
        seen[which].append(times)
        print(f"{which:3s} ({'at ' + _REF.value if which == 'ref' else 'this tree'})"
              f": first call {times['first'][0]:.2f} CPU-s ({times['first'][1]:.2f} s wall), "
              f"warm {times['warm'][0]:.2f} CPU-s ({times['warm'][1]:.2f} s wall); "
              f"{', '.join(sorted(os.listdir(os.path.join(out, 'plots'))))}", flush=True)
    for key in ("first", "warm"):
      ref = statistics.median(t[key][0] for t in seen["ref"])
      new = statistics.median(t[key][0] for t in seen["new"])
      print(f"{key}: new / ref = {new:.2f} / {ref:.2f} CPU-s = {new / ref:.2f} "
            f"(medians of {_REPEATS.value})", flush=True)


if __name__ == "__main__":
  app.run(main)
