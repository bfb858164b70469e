"""Stacked (runs x members) training step against the same models trained one by one.

  python benchmarks/stack_throughput.py                       # markdown table
  python benchmarks/stack_throughput.py --json                # one JSON object per case
  python benchmarks/stack_throughput.py --models=mlp,lenet5 --stacks=2x1,4x2 --steps=10

For each model, stack R x M, execution strategy and number of devices, the real jitted train
step of churn_jax.step (independent members, as in a deep ensemble) is timed after warm-up:
the median of --steps steps, synchronised with block_until_ready. "separate" is R*M times the
median step of the single-model program on one device (loop strategy, the plain jit a user
would write), i.e. what training the same models one after another costs. The ratio
stacked / separate is the number to push below 1. Everything runs in one process, which
exposes --cpu_devices CPU devices (default: one per core); a case on N devices shards the
batch over a ('data',) mesh of N of them, as the trainer does (churn_jax/host_devices.py).
"""

import json
import statistics
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from churn_jax import host_devices, methods, models, sharding, stack, step as step_lib

_MODELS = flags.DEFINE_list("models", ["mlp", "conv1d", "lenet5", "resnet20"], "Models.")
_STACKS = flags.DEFINE_list("stacks", ["1x1", "2x1", "1x2", "4x2"], "R x M stacks.")
_STRATEGIES = flags.DEFINE_list("strategies", ["vmap", "loop"], "Execution strategies.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per case (median reported).")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Per-run batch size.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object per case instead of a table.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "CPU devices of the process (0: one per "
                                    "core). Ignored on GPU/TPU.")
_DEVICES = flags.DEFINE_list("devices", ["1", "all"], "Device counts to time each stack on.")

# Input shapes as used by the configs: MNIST-1D vectors, CIFAR-sized images.
_INPUT = {"mlp": (40,), "conv1d": (40,), "lenet5": (32, 32, 3), "resnet20": (32, 32, 3)}


def _time_case(model_name, runs, members, strategy, batch_size, steps, num_devices=1):
  model = models.get_model(model_name, 10)
  kind = "baseline" if members == 1 else "ensemble"
  method = methods.build(kind, ml_collections.ConfigDict(dict(kind=kind, num_members=members)),
                         1000)
  lr = ml_collections.ConfigDict(dict(base=0.01, warmup_steps=0, decay_steps=()))
  tx = step_lib.make_optimizer(ml_collections.ConfigDict(dict(name="sgd", momentum=0.9)), lr)
  keys = jax.random.split(jax.random.PRNGKey(0), runs * members).reshape(runs, members, -1)
  run_rngs = jax.random.split(jax.random.PRNGKey(1), runs)
  shape = _INPUT[model_name]
  mesh = sharding.make_mesh(runs, members, batch_size, jax.devices()[:num_devices], strategy)
  state = step_lib.init_state(model, tx, keys, run_rngs, jnp.zeros((1,) + shape), mesh)
  train_step = step_lib.make_train_step(model, method, tx, strategy)
  rng = np.random.default_rng(0)
  batch = jax.device_put(
      (np.asarray(rng.normal(size=(runs, batch_size) + shape), np.float32),
       np.asarray(rng.integers(0, 10, size=(runs, batch_size)), np.int32)),
      sharding.batch_sharding(mesh))
  start = time.perf_counter()
  state, _ = train_step(state, batch, {})
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  state, _ = train_step(state, batch, {})  # One more warm-up step.
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, _ = train_step(state, batch, {})
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  return statistics.median(times), compile_s


def main(argv):
  del argv
  host_devices.configure(_CPU_DEVICES.value or host_devices.num_cores())  # Before any jax op.
  total = len(jax.devices())
  counts = sorted({total if d == "all" else min(int(d), total) for d in _DEVICES.value})
  rows = []
  for model_name in _MODELS.value:
    single, _ = _time_case(model_name, 1, 1, "loop", _BATCH.value, _STEPS.value)
    auto_strategy = stack.resolve_strategy("auto", models.uses_convolutions(model_name))
    auto_devices = min(total, host_devices.auto_count(model_name, _BATCH.value, total)) \
        if jax.default_backend() == "cpu" else total
    for spec in _STACKS.value:
      runs, members = (int(v) for v in spec.split("x"))
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
          rows.append(row)
          if _JSON.value:
            print(json.dumps(row), flush=True)
  if not _JSON.value:
    print(f"backend {jax.default_backend()}, {total} devices, batch {_BATCH.value} per run, "
          f"median of {_STEPS.value} steps; (auto) = what strategy='auto' and cpu_devices=0 pick")
    print("| model | R x M | strategy | devices | stacked ms | separate ms | ratio | compile s "
          "| ex/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
      mark = " (auto)" if r["auto"] else ""
      print(f"| {r['model']} | {r['stack']} | {r['strategy']}{mark} | {r['devices']} | "
            f"{r['step_ms']:.1f} | {r['separate_ms']:.1f} | "
            f"{r['ratio_stacked_over_separate']:.2f} | {r['compile_s']:.1f} | "
            f"{r['examples_per_s']:.0f} |")


if __name__ == "__main__":
  app.run(main)
