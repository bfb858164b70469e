"""What the paper table costs on TPU and GPU, from the program itself, compiled on this CPU.

  nice python benchmarks/paper_scale.py   # --memory: does each shipped config fit? (docs/TPU.md)
  nice python benchmarks/paper_scale.py --nomemory --cost --configs=cifar10,svhn \
      --strategies=vmap,loop
  nice python benchmarks/paper_scale.py --nomemory --cost --configs=imagenet --strategies=vmap \
      --nocompile --nogrouped_conv_check    # FLOPs only: for models too slow to compile here

--cost:
For each paper config (experiments/<name>.py: its model, R runs, global batch 1024, its
methods and step count) and strategy, the stacked train step of each distinct member count
M among the config's methods (baseline-like methods M=1, co-distillation M=2; their losses
differ only in a few elementwise ops) is traced with abstract shapes (jax.ShapeDtypeStruct:
no data, no parameters allocated), lowered and compiled for this CPU. It prints

  - FLOPs per step (XLA cost analysis of the compiled step);
  - bytes of parameters and optimizer state (the abstract TrainState) and the step's peak
    temporaries (XLA memory analysis of the one-device CPU compile);
  - per target (TPU v3-8, v4-8, v5e-8, one H100): the mesh make_mesh would choose
    (churn_jax/engine/sharding.py), whether state + temporaries fit one device's memory when split
    evenly over that mesh, the step time at 100% and 40% of peak FLOP/s, and the hours of
    the config's whole table (every method, its num_train_steps, one method after another).

Assumptions, stated: the work and temporaries split evenly over the mesh's devices; the step
is compute bound (no input, communication or memory-bandwidth limits); float32 convolutions
and matmuls run at the bf16 peak on TPU (XLA's default precision is one bf16 pass) and at the
TF32 peak on the H100 (JAX's default precision on GPU). Temporaries are XLA:CPU's, not the TPU
compiler's. Evaluation and checkpoint time are not counted. So every step time and hour is a
lower bound; and "split evenly" does not hold for vmap's grouped convolutions (--memory).

With --grouped_conv_check, the vmap step of the config's model is also lowered for TPU
(jax.export, no TPU needed) and its convolutions are counted by feature_group_count.

--memory (default): for each config and member count, the step AS THE CONFIG SHIPS IT
(compute_dtype, remat, microbatches, strategy, mesh) compiled for the device count of the
accelerator docs/TPU.md recommends for it (memory_check.RECOMMENDED; this process exposes
that many CPU devices, so XLA compiles the SPMD-partitioned program of one device), and its
memory analysis per device against that accelerator's HBM: fits only at <= 80% (memory_check.
MARGIN: XLA:CPU is not the TPU compiler). One line per case as it finishes. --cost: the table
above (one-device compiles; --configs=imagenet needs --nocompile there).
"""

import dataclasses
import functools
import importlib.util
import math
import os
import re
import sys
import time

# The most devices a recommended accelerator has (memory_check.RECOMMENDED, checked in main):
# CPU devices must be requested before JAX starts.
MAX_DEVICES = 8
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={MAX_DEVICES}").strip()

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from churn_jax import methods, models
from churn_jax.engine import sharding, step as step_lib
from churn_jax.models import layers
from churn_jax.study import settings, train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import memory_check  # pylint: disable=g-import-not-at-top,wrong-import-position

# The ResNets compute their weight gradient in 16-example chunks on CPU only, unrolled
# (models/layers.py): at batch 1024 that is 64 gradient convolutions per layer, a program a
# TPU or GPU never runs and one that takes XLA:CPU very long to compile. Cost the program
# they run: one chunk as large as the batch (the same FLOPs).
layers.WEIGHT_GRAD_CHUNK = sys.maxsize
# Nor the CPU forward's zero output channels (YNNPACK's few-channel padding).
layers.PAD_FEW_CHANNELS = False

_CONFIGS = flags.DEFINE_list("configs", list(memory_check.RECOMMENDED),
                             "experiments/<name>.py configs to check.")
_MEMORY = flags.DEFINE_bool("memory", True, "Per-device compiled memory of the shipped step "
                            "on the recommended accelerator, with a fits verdict.")
_COST = flags.DEFINE_bool("cost", False, "FLOPs, one-device memory and hours per target.")
_STRATEGIES = flags.DEFINE_list("strategies", ["vmap", "loop"], "Execution strategies.")
_COMPILE = flags.DEFINE_bool("compile", True,
                             "Compile for the CPU (FLOPs and memory); false: FLOPs of the "
                             "lowered program only, for models too slow to compile here.")
_DTYPE = flags.DEFINE_string("compute_dtype", "", "Override config.compute_dtype (the paper "
                              "recipes: bfloat16); '' keeps the config's.")
_REMAT = flags.DEFINE_bool("remat", False, "config.remat: recompute activations in backward.")
_MICRO = flags.DEFINE_integer("microbatches", 0, "config.microbatches (0: the config's).")
_GROUPED = flags.DEFINE_bool("grouped_conv_check", True,
                             "Count grouped convolutions in the TPU lowering of the vmap step.")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TARGETS = memory_check.TARGETS
_STEP = 1024  # The paper's global batch.


def load_config(name: str):
  path = os.path.join(_ROOT, "experiments", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"paper_scale_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _nbytes(tree) -> int:
  return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
             for x in jax.tree_util.tree_leaves(tree))


def abstract_step(config, method, strategy):
  """(jitted step, abstract state, abstract batch) of `method` in `config`; nothing allocated."""
  model_cfg = dict(config.model)
  model = models.get_model(model_cfg.pop("name"), memory_check.dataset_classes(config),
                           **model_cfg)
  tx = step_lib.make_optimizer(config.optimizer, config.lr)
  runs, members = int(config.num_runs), method.num_members
  shape = memory_check.input_shape(config)
  keys = train.member_keys(config.seed, range(runs), members, True)
  run_rngs = jnp.zeros((runs, 2), jnp.uint32)
  init = functools.partial(step_lib.init_state, model, tx,
                           keep_stale=method.stale_refresh_steps > 0)
  state = jax.eval_shape(lambda k, r: init(k, r, jnp.zeros((1,) + shape)), keys, run_rngs)
  batch = (jax.ShapeDtypeStruct((runs, config.batch_size) + shape, jnp.float32),
           jax.ShapeDtypeStruct((runs, config.batch_size), jnp.int32))
  overrides = dict(compute_dtype=_DTYPE.value or config.get("compute_dtype", "float32"),
                   remat=_REMAT.value or bool(config.get("remat", False)),
                   microbatches=_MICRO.value or int(config.get("microbatches", 1)))
  numerics = dataclasses.replace(settings.numerics_of(config), **overrides)
  return (step_lib.make_train_step(model, method, tx, strategy, numerics=numerics), state,
          batch)


def cost(config, method, strategy):
  """FLOPs, state bytes, temporaries and compile seconds of one step."""
  step, state, batch = abstract_step(config, method, strategy)
  start = time.perf_counter()
  program = step.lower(state, batch, {})
  if _COMPILE.value:
    program = program.compile()
  seconds = time.perf_counter() - start
  analysis = program.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  temp = program.memory_analysis().temp_size_in_bytes if _COMPILE.value else float("nan")
  return dict(flops=float(analysis["flops"]), params=_nbytes(state.params),
              opt=_nbytes(state.opt_state) + _nbytes(state.batch_stats) + _nbytes(state.stale),
              temp=float(temp), batch=_nbytes(batch), compile_s=seconds)


def grouped_convolutions(config, method) -> str:
  """How the TPU lowering of the vmap step writes its convolutions."""
  step, state, batch = abstract_step(config, method, "vmap")
  exported = jax.export.export(step, platforms=["tpu"])(state, batch, {})
  text = exported.mlir_module()
  features = [int(g) for g in re.findall(r"feature_group_count = (\d+)", text)]
  batches = [int(g) for g in re.findall(r"batch_group_count = (\d+)", text)]
  convs = len(re.findall(r"stablehlo.convolution", text))
  return (f"{config.model.name} vmap R={config.num_runs} M={method.num_members}, TPU lowering: "
          f"{convs} convolutions; feature_group_count > 1 in {sum(g > 1 for g in features)} "
          f"(values {sorted(set(features))}), batch_group_count > 1 in "
          f"{sum(g > 1 for g in batches)} (values {sorted(set(batches))})")


def _fits(need: float, have: float) -> str:
  return "n/c" if math.isnan(need) else ("yes" if need <= have else "no")


def _gib(n: float) -> str:
  return f"{n / 2**30:.2f}"


def memory_table():
  """Per config and member count: the shipped step's compiled memory per device."""
  print("| config | M | methods | step as shipped | accelerator | mesh (run, member, data) | "
        "arguments GiB | outputs GiB | alias GiB | temporaries GiB | code GiB | per device GiB "
        "| HBM GiB | verdict (<= 80%) | all-gathers | lower+compile s |")
  print("|" + "---|" * 16)
  for name in _CONFIGS.value:
    config = load_config(name)
    target = memory_check.RECOMMENDED[name]
    spec = TARGETS[target]
    numerics = settings.numerics_of(config)
    shipped = (f"{memory_check.accelerator_strategy(config)}, {numerics.compute_dtype}, "
               f"remat {'on' if numerics.remat else 'off'}, microbatches "
               f"{numerics.microbatches}, mesh {config.get('mesh', '') or 'auto'}")
    for members, (group, method) in memory_check.build_methods(config).items():
      start = time.perf_counter()
      m = memory_check.step_memory(config, method, spec["devices"])
      seconds = time.perf_counter() - start
      g = memory_check.gib
      print(f"| {name} ({config.model.name}, R={config.num_runs}, batch {config.batch_size}) | "
            f"{members} | {','.join(group)} | {shipped} | {target} | {m.mesh} | "
            f"{g(m.arguments)} | {g(m.outputs)} | {g(m.alias)} | {g(m.temporaries)} | "
            f"{g(m.code)} | {g(m.per_device)} | {g(spec['memory'])} "
            f"| {memory_check.verdict(m.per_device, spec['memory'])} "
            f"({100 * m.per_device / spec['memory']:.0f}%) | {m.all_gathers} | {seconds:.0f} |",
            flush=True)


def main(argv):
  del argv
  print(f"# jax {jax.__version__}, compiled on {jax.devices()[0].device_kind} "
        f"({os.cpu_count()} cores, {jax.device_count()} devices); global batch {_STEP}",
        flush=True)
  needed = max(TARGETS[memory_check.RECOMMENDED[n]]["devices"] for n in _CONFIGS.value)
  if needed > jax.device_count():
    print(f"error: {needed} devices needed; set XLA_FLAGS="
          f"--xla_force_host_platform_device_count={needed}", file=sys.stderr)
    return 1
  if _MEMORY.value:
    memory_table()
  if _COST.value:
    cost_table()
  return 0


def cost_table():
  """FLOPs, one-device temporaries, the mesh per target and the table's hours."""
  header = ("| config | strategy | M | methods | steps | GFLOP/step | params GiB | opt+stats GiB "
            "| temp GiB | lower+compile s | target | mesh (run, member, data) | fits if split "
            "evenly (--memory compiles it per device) | step ms @100% (lower bound) | "
            "step ms @40% (lower bound) |")
  totals = {}
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  for name in _CONFIGS.value:
    config = load_config(name)
    assert config.batch_size == _STEP, config.batch_size
    names = [n.strip() for n in str(config.methods).split(",") if n.strip()]
    built = {n: methods.build(n, config.method_configs[n], config.num_train_steps) for n in names}
    by_members = {}
    for n, m in built.items():
      by_members.setdefault(m.num_members, []).append(n)
    for strategy in _STRATEGIES.value:
      for members, group in sorted(by_members.items()):
        c = cost(config, built[group[0]], strategy)
        for target, spec in TARGETS.items():
          mesh = sharding.mesh_shape(spec["devices"], config.num_runs, members, _STEP, strategy)
          devices = math.prod(mesh)
          # The state splits over (run, member) and is replicated over 'data'.
          state_bytes = (c["params"] + c["opt"]) / (mesh[0] * mesh[1])
          per_device = state_bytes + (c["temp"] + c["batch"]) / devices  # nan: not compiled.
          step_s = c["flops"] / devices / spec["flops"]
          key = (name, strategy, target)
          totals[key] = totals.get(key, 0.0) + step_s * config.num_train_steps * len(group)
          print(f"| {name} ({config.model.name}, R={config.num_runs}) | {strategy} | {members} "
                f"| {','.join(group)} | {config.num_train_steps} | {c['flops'] / 1e9:.0f} | "
                f"{_gib(c['params'])} | {_gib(c['opt'])} | {_gib(c['temp'])} | "
                f"{c['compile_s']:.0f} | {target} | {mesh} | "
                f"{_fits(per_device, spec['memory'])} ({_gib(per_device)} of "
                f"{_gib(spec['memory'])} GiB) | {1e3 * step_s:.3g} | {1e3 * step_s / 0.4:.3g} |",
                flush=True)
    if _GROUPED.value and models.uses_convolutions(config.model.name):
      members = max(by_members)
      print("#", grouped_convolutions(config, built[by_members[members][0]]), flush=True)
  print("\n| config | strategy | target | table hours @100% (lower bound) | "
        "table hours @40% (lower bound) |")
  print("|---|---|---|---|---|")
  for (name, strategy, target), seconds in totals.items():
    print(f"| {name} | {strategy} | {target} | {seconds / 3600:.3g} | "
          f"{seconds / 3600 / 0.4:.3g} |")


if __name__ == "__main__":
  sys.exit(app.run(main))
