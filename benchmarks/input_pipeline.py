"""Wall-clock cost of the trainer's input pipeline on the default MNIST-1D recipe.

  python benchmarks/input_pipeline.py                         # baseline, markdown table
  python benchmarks/input_pipeline.py --method=codistill --steps=1000 --json
  python benchmarks/input_pipeline.py --pipelines=device --prefetch=4   # deeper queue
  python benchmarks/input_pipeline.py --config=experiments/mnist1d.py:quick --config.num_runs=2

The stack of experiments/mnist1d.py (its R runs, the method's M members, the real MNIST-1D
data and the real jitted step of churn_jax.engine.step, set up by the trainer's own code) is
trained for --steps steps fed in three ways, with the loop of churn_jax/study/train.py:
  staged: one batch put on device before timing and fed at every step (zero input cost);
  device: the trainer's pipeline, dataset.train_batches + distributed.prefetch_to_device
          (gather, transfer in groups of steps, split and wait in a background thread);
          device:K is the same with groups of at most K steps (device:1: one per step);
  host:   the earlier pipeline, a thread gathering host batches and the transfer
          (distributed.global_batch) on the main thread.
Each timing starts with the state ready (compile and warm-up excluded), includes starting
and closing the pipeline and ends with block_until_ready. The modes alternate --repeats
times (in rotating order) and medians are reported: ms per step; the overhead
(pipeline - staged) / staged of the same round, which is what the pipeline costs in
wall-clock time (pairing the rounds cancels slow drifts of a shared machine); the
fraction of the time the main thread waited for its next batch (what timings.json reports as
input_wait_fraction: with asynchronous dispatch it is not the wall-clock cost); and the
process CPU time per step (all threads, XLA's included), which is less sensitive than wall
time to other processes on a shared machine.
"""

import json
import os
import statistics
import time

from absl import app, flags
import jax
from ml_collections import config_flags

from churn_jax import data as data_lib, methods
from churn_jax.configs import config_lib
from churn_jax.engine import sharding, step as step_lib
from churn_jax.runtime import distributed
from churn_jax.study import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "..", "experiments", "mnist1d.py"),
    "Experiment config (default: the MNIST-1D recipe), optionally with ':args'.")
_METHOD = flags.DEFINE_enum("method", "baseline", ["baseline", "codistill"], "Method trained.")
_STEPS = flags.DEFINE_integer("steps", 500, "Timed steps per measurement.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Measurements per mode (median reported).")
_PIPELINES = flags.DEFINE_list("pipelines", ["device", "device:1", "host"],
                               "Pipelines to compare with staged (device, device:K, host).")
_PREFETCH = flags.DEFINE_integer("prefetch", 2, "Queue size of the prefetch thread.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object per pipeline.")


def _timed_loop(train_step, state, fetch, steps):
  """The trainer's loop over `steps` steps; returns (state, seconds, seconds waited, CPU s)."""
  jax.block_until_ready(state)
  waited = 0.0
  start, cpu_start = time.perf_counter(), time.process_time()
  next_batch, close = fetch()
  try:
    for _ in range(steps):
      wait_start = time.perf_counter()
      batch = next_batch()
      waited += time.perf_counter() - wait_start
      state, _ = train_step(state, batch, {})
  finally:
    close()
  jax.block_until_ready(state)
  return state, time.perf_counter() - start, waited, time.process_time() - cpu_start


def main(argv):
  del argv
  config = _CONFIG.value
  dataset = data_lib.get_dataset(config.data)
  name = _METHOD.value
  method = methods.build(name, config.method_configs[name], config.num_train_steps)
  tx = step_lib.make_optimizer(config.optimizer, config.lr)
  run_ids, model, strategy, tx, mesh, state = train._setup(  # pylint: disable=protected-access
      config, dataset, method, None, tx, None)
  train_step = step_lib.make_train_step(model, method, tx, strategy)
  seeds = train.data_seeds(config.seed, run_ids, "data" in config_lib.vary_set(config))
  batch_sharding = sharding.batch_sharding(mesh)
  batch_size, steps = config.batch_size, _STEPS.value
  host_batches = lambda start: dataset.train_batches(batch_size, seeds, start, steps)
  staged = distributed.global_batch(next(host_batches(0)), batch_sharding, batch_size)

  step = 1  # Each pipeline starts at the state's step (after the compile step below).
  def fetch(mode):
    if mode == "staged":
      return (lambda: staged), (lambda: None)
    if mode.split(":")[0] == "device":
      groups = {"group_steps": int(mode.split(":")[1])} if ":" in mode else {}
      it = distributed.prefetch_to_device(host_batches(step), batch_sharding, batch_size,
                                          _PREFETCH.value, **groups)
      return (lambda: next(it)), it.close
    if mode == "host":
      it = data_lib.prefetch(host_batches(step), _PREFETCH.value)
      return (lambda: distributed.global_batch(next(it), batch_sharding, batch_size)), it.close
    raise ValueError(f"unknown pipeline {mode!r}; known: device, device:K, host")

  modes = ["staged"] + [p for p in _PIPELINES.value if p != "staged"]
  start = time.perf_counter()
  state, _ = train_step(state, staged, {})
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  warmup = min(steps, 50)
  for mode in modes:  # Warm-up (the pipeline's slicing program compiles here): not timed.
    state, *_ = _timed_loop(train_step, state, lambda m=mode: fetch(m), warmup)
    step += warmup

  seconds = {m: [] for m in modes}
  waited = {m: [] for m in modes}
  cpu = {m: [] for m in modes}
  for repeat in range(_REPEATS.value):
    shift = repeat % len(modes)  # Rotate the order so that no mode always runs first.
    for mode in modes[shift:] + modes[:shift]:
      state, total, wait, cpu_s = _timed_loop(train_step, state, lambda m=mode: fetch(m), steps)
      step += steps
      seconds[mode].append(total)
      waited[mode].append(wait / total)
      cpu[mode].append(cpu_s)

  ideal = statistics.median(seconds["staged"])
  rows = []
  for mode in modes:
    total = statistics.median(seconds[mode])
    paired = [a / b - 1 for a, b in zip(seconds[mode], seconds["staged"])]
    row = dict(method=name, runs=len(run_ids), members=method.num_members,
               batch_size=batch_size, pipeline=mode, prefetch=_PREFETCH.value, steps=steps,
               repeats=_REPEATS.value, step_ms=1e3 * total / steps,
               staged_step_ms=1e3 * ideal / steps, overhead=statistics.median(paired),
               wait_fraction=statistics.median(waited[mode]),
               cpu_ms=1e3 * statistics.median(cpu[mode]) / steps,
               step_ms_all=[1e3 * s / steps for s in seconds[mode]],
               compile_s=compile_s, backend=jax.default_backend())
    rows.append(row)
    if _JSON.value:
      print(json.dumps(row), flush=True)
  if not _JSON.value:
    print(f"{name}: {len(run_ids)} runs x {method.num_members} members, batch {batch_size}, "
          f"backend {jax.default_backend()}, queue {_PREFETCH.value}, median of "
          f"{_REPEATS.value} x {steps} steps")
    print("| pipeline | ms/step | overhead vs staged | main-thread wait | CPU ms/step |")
    print("|---|---|---|---|---|")
    for r in rows:
      print(f"| {r['pipeline']} | {r['step_ms']:.2f} | {100 * r['overhead']:+.1f}% | "
            f"{100 * r['wait_fraction']:.1f}% | {r['cpu_ms']:.2f} |")


if __name__ == "__main__":
  app.run(main)
