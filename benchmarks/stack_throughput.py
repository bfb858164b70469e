"""Stacked (runs x members) training step against the same models trained one by one.

  python benchmarks/stack_throughput.py                       # markdown table
  python benchmarks/stack_throughput.py --json                # one JSON object per case
  python benchmarks/stack_throughput.py --models=mlp,lenet5 --stacks=2x1,4x2 --steps=10

For each model, stack R x M, execution strategy and number of devices, the real jitted train
step of churn_jax.engine.step (independent members, as in a deep ensemble) is timed after warm-up:
the median of --steps steps, synchronised with block_until_ready. "separate" is R*M times the
median step of the single-model program on one device (loop strategy, the plain jit a user
would write), i.e. what training the same models one after another costs. The ratio
stacked / separate is the number to push below 1. Everything runs in one process, which
exposes --cpu_devices CPU devices (default: one per core); a case on N devices shards the
batch over a ('data',) mesh of N of them, as the trainer does (churn_jax/runtime/host_devices.py).
"""

import json

from absl import app, flags
import jax

from churn_jax import models
from churn_jax.engine import stack
from churn_jax.runtime import host_devices
import common  # benchmarks/common.py

_MODELS = flags.DEFINE_list("models", ["mlp", "conv1d", "lenet5", "resnet20"], "Models.")
_STACKS = flags.DEFINE_list("stacks", ["1x1", "2x1", "1x2", "4x2"], "R x M stacks.")
_STRATEGIES = flags.DEFINE_list("strategies", ["vmap", "loop"], "Execution strategies.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per case (median reported).")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Per-run batch size.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object per case instead of a table.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "CPU devices of the process (0: one per "
                                    "core). Ignored on GPU/TPU.")
_DEVICES = flags.DEFINE_list("devices", ["1", "all"], "Device counts to time each stack on.")

def _time_case(model_name, runs, members, strategy, batch_size, steps, num_devices=1):
  return common.time_steps(*common.build_case(model_name, runs, members, strategy, batch_size,
                                              num_devices), steps)


def main(argv):
  del argv
  host_devices.configure(_CPU_DEVICES.value or host_devices.num_cores())  # Before any jax op.
  total = len(jax.devices())
  counts = sorted({total if d == "all" else min(int(d), total) for d in _DEVICES.value})
  if not _JSON.value:  # Header first, then one row per case as it finishes.
    print(f"backend {jax.default_backend()}, {total} devices, batch {_BATCH.value} per run, "
          f"median of {_STEPS.value} steps; (auto) = what strategy='auto' and cpu_devices=0 pick")
    print("| model | R x M | strategy | devices | stacked ms | separate ms | ratio | compile s "
          "| ex/s |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
  for model_name in _MODELS.value:
    single, _ = _time_case(model_name, 1, 1, "loop", _BATCH.value, _STEPS.value)
    auto_strategy = stack.resolve_strategy("auto", models.uses_convolutions(model_name))
    for spec in _STACKS.value:
      runs, members = (int(v) for v in spec.split("x"))
      auto_devices = min(total, host_devices.auto_count(model_name, _BATCH.value, total,
                                                        runs)) \
          if jax.default_backend() == "cpu" else total
      for strategy in _STRATEGIES.value:
        for num_devices in counts:
          step_s, compile_s = _time_case(model_name, runs, members, strategy, _BATCH.value,
                                         _STEPS.value, num_devices)
          separate = runs * members * single
          row = dict(model=model_name, stack=spec, strategy=strategy, devices=num_devices,
                     auto=(strategy, num_devices) == (auto_strategy, auto_devices),
                     step_ms=1e3 * step_s, separate_ms=1e3 * separate,
                     ratio_stacked_over_separate=step_s / separate, compile_s=compile_s,
                     examples_per_s=runs * members * _BATCH.value / step_s,
                     backend=jax.default_backend())
          if _JSON.value:
            print(json.dumps(row), flush=True)
          else:
            mark = " (auto)" if row["auto"] else ""
            print(f"| {model_name} | {spec} | {strategy}{mark} | {num_devices} | "
                  f"{row['step_ms']:.1f} | {row['separate_ms']:.1f} | "
                  f"{row['ratio_stacked_over_separate']:.2f} | {compile_s:.1f} | "
                  f"{row['examples_per_s']:.0f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
