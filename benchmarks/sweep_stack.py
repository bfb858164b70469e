"""A coefficient sweep as one stacked program against the same studies one after another.

  python benchmarks/sweep_stack.py                          # MNIST-1D codistill, 4 betas x 5 runs
  python benchmarks/sweep_stack.py --steps=1000 --json      # shorter; one JSON object

"stacked": churn_jax.study.sweeps.train_study trains the S x R runs of the sweep as one program.
"sequential": S studies (train.train_and_evaluate), one per beta, one after another, as
launch/sweep.py --mode=sequential runs them. Both are timed end to end from the config
(data loading, compilation, training, prediction, metrics, results files), each in a fresh
workdir; their results are compared value by value (bitwise where XLA emits the same kernels
for both stack sizes; at MNIST-1D sizes a matmul of 4x5 runs may round differently from one of
5 runs, in the last bit of float32: docs/PERFORMANCE.md). Then the compiled
cost analysis of the two train steps: FLOPs and bytes per step, and the time those need at a
chip's peak (the roofline bound), which shows how little of an accelerator one small study
occupies and why stacking S points is nearly free there.
"""

import json
import os
import platform
import tempfile
import time

from absl import app, flags
import jax
import jax.numpy as jnp

from churn_jax import data as data_lib
from churn_jax.engine import step as step_lib
from churn_jax.runtime import host_devices
from churn_jax.study import settings
from churn_jax.study import sweeps, train

_CONFIG = flags.DEFINE_string("config", "experiments/mnist1d.py", "Experiment config file.")
_BETAS = flags.DEFINE_list("betas", ["0.5", "1", "2", "3"], "Co-distillation betas (S).")
_RUNS = flags.DEFINE_integer("runs", 5, "Replicate runs per beta (R).")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps (0: the config's).")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
_ORDER = flags.DEFINE_enum("first", "sequential", ["sequential", "stacked"],
                           "Which side runs first (caches warm up for the second).")

# Peak numbers of an accelerator (NVIDIA H100 SXM data sheet: FP32 without tensor cores, HBM3).
PEAKS = {"H100 SXM": dict(fp32_tflops=67.0, hbm_tb_s=3.35)}


def _config():
  import importlib.util  # pylint: disable=g-import-not-at-top
  path, _, arg = _CONFIG.value.partition(":")
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  config.num_runs = _RUNS.value
  config.progress = False
  config.checkpoint_every_steps = 0
  if _STEPS.value:
    config.num_train_steps = _STEPS.value
    config.lr.decay_steps = tuple(int(_STEPS.value * f) for f in (0.5, 0.75))
  return config


def _sequential(config, betas, root):
  entries = {}
  for beta in betas:
    point = config.copy_and_resolve_references()
    point.method_configs.codistill.beta.value = beta
    point.methods = "codistill"
    entries[sweeps.point_name("codistill", "beta.value", beta)] = train.train_and_evaluate(
        point, os.path.join(root, f"beta={beta:g}"))["methods"]["codistill"]
  return entries


def _cost(config, num_points):
  """FLOPs and bytes of one compiled train step of `num_points` x R runs."""
  dataset = data_lib.get_dataset(config.data)
  sweep = sweeps.Sweep("codistill", "beta.value", tuple(float(b) for b in range(num_points)))
  method = sweeps.stacked_method(sweep, config.method_configs.codistill,
                                 int(config.num_train_steps))
  run_ids = list(range(config.num_runs)) * num_points
  _, model, strategy, tx, _, state = train._setup(  # pylint: disable=protected-access
      config, dataset, method, run_ids, None, None)
  step = step_lib.make_train_step(model, method, tx, strategy)
  n = len(run_ids)
  batch = (jnp.zeros((n, config.batch_size) + dataset.input_shape, jnp.float32),
           jnp.zeros((n, config.batch_size), jnp.int32))
  coefficients = jnp.zeros((n,), jnp.float32)
  analysis = step.lower(state, batch, {}, coefficients).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis["flops"]), float(analysis.get("bytes accessed", float("nan")))


def _roofline_us(flops, num_bytes, peak):
  """Microseconds a step needs at the chip's peak: the slower of arithmetic and memory."""
  return 1e6 * max(flops / (peak["fp32_tflops"] * 1e12), num_bytes / (peak["hbm_tb_s"] * 1e12))


def main(argv):
  del argv
  config = _config()
  host_devices.configure(settings.cpu_device_count(config))
  betas = [float(b) for b in _BETAS.value]
  sweep = sweeps.Sweep("codistill", "beta.value", tuple(betas))
  seconds, results = {}, {}
  with tempfile.TemporaryDirectory() as root:
    sides = ["sequential", "stacked"]
    if _ORDER.value == "stacked":
      sides.reverse()
    for side in sides:
      start = time.perf_counter()
      if side == "sequential":
        results[side] = _sequential(config, betas, os.path.join(root, "sequential"))
      else:
        results[side] = {k: v for k, v in sweeps.train_study(
            config, os.path.join(root, "stacked"), [sweep])["methods"].items()}
      seconds[side] = time.perf_counter() - start
  keys = ("accuracy", "churn", "schurn", "entropy", "nll")
  equal = {k: all(results["stacked"][n][k] == results["sequential"][n][k]
                  for n in results["sequential"]) for k in keys}
  max_diff = max(abs(a - b) for n in results["sequential"] for k in keys for a, b in zip(
      results["stacked"][n][k]["values"], results["sequential"][n][k]["values"]))
  flops_1, bytes_1 = _cost(config, 1)
  flops_s, bytes_s = _cost(config, len(betas))
  out = dict(
      machine=f"{platform.processor()} {os.cpu_count()} cores, {jax.default_backend()} "
              f"({jax.devices()[0].device_kind})",
      steps=int(config.num_train_steps), runs=_RUNS.value, betas=betas,
      sequential_s=seconds["sequential"], stacked_s=seconds["stacked"],
      ratio=seconds["stacked"] / seconds["sequential"], results_equal=equal,
      max_metric_difference=max_diff,
      step_flops_one_study=flops_1, step_bytes_one_study=bytes_1,
      step_flops_stacked=flops_s, step_bytes_stacked=bytes_s,
      roofline_us={chip: {"one_study": _roofline_us(flops_1, bytes_1, p),
                          "stacked": _roofline_us(flops_s, bytes_s, p)}
                   for chip, p in PEAKS.items()})
  if _JSON.value:
    print(json.dumps(out))
    return
  print(f"{out['machine']}; {out['steps']} steps, {len(betas)} betas x {_RUNS.value} runs")
  print(f"sequential (S studies one after another): {seconds['sequential']:.1f} s")
  print(f"stacked (one program):                    {seconds['stacked']:.1f} s")
  print(f"ratio stacked / sequential: {out['ratio']:.3f}")
  print(f"per-run metrics equal, stacked vs sequential: {equal}; largest difference of any "
        f"per-run or per-pair value: {max_diff:.2e}")
  print(f"train step, one study ({_RUNS.value} runs): {flops_1 / 1e9:.3f} GFLOP, "
        f"{bytes_1 / 1e6:.1f} MB; stacked ({len(betas) * _RUNS.value} runs): "
        f"{flops_s / 1e9:.3f} GFLOP, {bytes_s / 1e6:.1f} MB")
  for chip, times in out["roofline_us"].items():
    print(f"  at {chip} peak (FP32, HBM): one study {times['one_study']:.1f} us/step, "
          f"stacked {times['stacked']:.1f} us/step")


if __name__ == "__main__":
  app.run(main)
