"""Does a config's train step fit its accelerator? The compiled memory analysis, per device.

benchmarks/paper_scale.py prints the table (docs/TPU.md); tests/benchmarks/memory_check_test.py
pins the wiring. Scripts import this file from beside them (`import memory_check`).

The step is the trainer's (engine/step.py: make_train_step with the config's numerics:
compute_dtype, remat, microbatches), its strategy the one `strategy="auto"` resolves to on an
accelerator (vmap), its mesh the one the trainer builds from config.mesh for the target's
device count. State and batch are abstract (jax.ShapeDtypeStruct with the trainer's
NamedShardings: nothing allocated), so the compiled program is XLA's SPMD-partitioned
program of ONE device, and its memory analysis is per device. Compiling it needs that many
devices in this process: run with XLA_FLAGS=--xla_force_host_platform_device_count=N set
before JAX starts (paper_scale.py does it for itself).

Per device, live at the peak: arguments + outputs - aliased (the state is donated, so the new
state is written over the old) + temporaries + generated code. That is XLA:CPU's number,
not the TPU compiler's; see `MARGIN`.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from churn_jax import methods, models
from churn_jax.engine import sharding, stack, step as step_lib
from churn_jax.study import settings, train

# Per device (what JAX calls a device): peak dense FLOP/s and memory.
TARGETS = {
    # https://cloud.google.com/tpu/docs/v3: 123 TFLOP/s (bf16) and 32 GiB HBM per chip, two
    # TensorCores per chip, each a JAX device: a v3-8 is 8 devices of 61.5 TFLOP/s, 16 GiB.
    "TPU v3-8": dict(devices=8, flops=123e12 / 2, memory=32 * 2**30 / 2),
    # https://cloud.google.com/tpu/docs/v4: 275 TFLOP/s (bf16), 32 GiB HBM per chip; a chip
    # (megacore) is one JAX device; v4-8 has 4 chips.
    "TPU v4-8": dict(devices=4, flops=275e12, memory=32 * 2**30),
    # https://cloud.google.com/tpu/docs/v5e: 197 TFLOP/s (bf16), 16 GB HBM per chip, one
    # TensorCore per chip; v5litepod-8 has 8 chips.
    "TPU v5e-8": dict(devices=8, flops=197e12, memory=16e9),
    # https://www.nvidia.com/en-us/data-center/h100/ (H100 SXM datasheet): TF32 Tensor Core
    # 989 TFLOP/s with sparsity = 494.5 dense; 80 GB HBM3.
    "H100": dict(devices=1, flops=989e12 / 2, memory=80e9),
}

# The accelerator docs/TPU.md recommends for each shipped paper config (keep the two equal).
RECOMMENDED = {"cifar10": "TPU v3-8", "cifar100": "TPU v3-8", "svhn": "TPU v3-8",
               "imagenet": "TPU v4-8", "inaturalist": "TPU v4-8"}

# "fits" only at <= 80% of HBM: the TPU compiler is not XLA:CPU. It tiles arrays in HBM
# (minor dimensions padded to multiples of 8 x 128 elements: a 16-channel activation can take
# up to 8x its bytes), keeps bf16 convolutions in bf16 where XLA:CPU may widen them to f32
# (CPU temporaries then overstate), and fuses and schedules differently (the peak set of live
# buffers differs). The runtime also reserves some HBM. 20% is our margin, not a measured bound.
MARGIN = 0.8


def verdict(per_device_bytes: float, hbm_bytes: float, margin: float = MARGIN) -> str:
  """'fits' when the step's per-device bytes are at most `margin` of the device's memory."""
  return "fits" if per_device_bytes <= margin * hbm_bytes else "does not fit"


def dataset_classes(config) -> int:
  from churn_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
  return tfds_source.SPECS[config.data.name].num_classes


def input_shape(config):
  if "image_size" in config.data:
    return (int(config.data.image_size),) * 2 + (3,)
  return (32, 32, 3)


def with_sharding(tree, shardings):
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def accelerator_strategy(config) -> str:
  """The strategy config.strategy resolves to on a TPU or GPU ("auto": vmap)."""
  return stack.resolve_strategy(config.get("strategy", "auto"),
                                models.uses_convolutions(config.model.name), backend="tpu")


def sharded_step(config, method, num_devices: int, numerics=None, num_classes=None):
  """(jitted step, abstract sharded state, abstract sharded batch, mesh shape) of `method` in
  `config`, as the trainer builds them on `num_devices` devices; nothing allocated.

  `numerics` overrides the config's (settings.numerics_of); `num_classes` the dataset's.
  """
  model_cfg = dict(config.model)
  model = models.get_model(model_cfg.pop("name"), num_classes or dataset_classes(config),
                           **model_cfg)
  tx = step_lib.make_optimizer(config.optimizer, config.lr)
  strategy = accelerator_strategy(config)
  runs, members = int(config.num_runs), method.num_members
  devices = jax.devices()[:num_devices]
  if len(devices) < num_devices:
    raise ValueError(f"{num_devices} devices needed, this process has {len(devices)}; set "
                     f"XLA_FLAGS=--xla_force_host_platform_device_count={num_devices}")
  mesh = sharding.make_mesh(runs, members, config.batch_size, devices, strategy,
                            spec=sharding.parse_mesh(config.get("mesh", "")))
  shape = input_shape(config)
  keys = train.member_keys(config.seed, range(runs), members, True)
  init = functools.partial(step_lib.init_state, model, tx,
                           keep_stale=method.stale_refresh_steps > 0)
  state = jax.eval_shape(lambda k, r: init(k, r, jnp.zeros((1,) + shape)), keys,
                         jnp.zeros((runs, 2), jnp.uint32))
  state = with_sharding(state, step_lib.state_sharding(mesh, state))
  rows = runs * method.streams_per_run
  batch_spec = sharding.batch_sharding(mesh)
  batch = (jax.ShapeDtypeStruct((rows, config.batch_size) + shape, jnp.float32,
                                sharding=batch_spec),
           jax.ShapeDtypeStruct((rows, config.batch_size), jnp.int32, sharding=batch_spec))
  numerics = numerics or settings.numerics_of(config)
  step = step_lib.make_train_step(model, method, tx, strategy, numerics=numerics)
  return step, state, batch, tuple(mesh.devices.shape)


@dataclasses.dataclass(frozen=True)
class StepMemory:
  """XLA's memory analysis of one device's compiled step, in bytes."""
  mesh: tuple
  arguments: int
  outputs: int
  alias: int
  temporaries: int
  code: int
  all_gathers: int = 0  # In the per-device program: > 0 where the partitioner gathers
                        # arrays, e.g. a batch it cannot keep split (replicated work).

  @property
  def per_device(self) -> int:
    """Live at the peak: the donated state's outputs overwrite its arguments (alias)."""
    return self.arguments + self.outputs - self.alias + self.temporaries + self.code


def step_memory(config, method, num_devices: int, numerics=None, num_classes=None) -> StepMemory:
  """Compiles the step as the trainer would run it on `num_devices` devices; its per-device
  memory analysis."""
  step, state, batch, mesh = sharded_step(config, method, num_devices, numerics, num_classes)
  compiled = step.lower(state, batch, {}).compile()
  analysis = compiled.memory_analysis()
  return StepMemory(all_gathers=compiled.as_text().count(" all-gather("), mesh=mesh, arguments=int(analysis.argument_size_in_bytes),
                    outputs=int(analysis.output_size_in_bytes),
                    alias=int(analysis.alias_size_in_bytes),
                    temporaries=int(analysis.temp_size_in_bytes),
                    code=int(analysis.generated_code_size_in_bytes))


def build_methods(config):
  """{M: [method names]} of config.methods and one built method per member count."""
  names = [n.strip() for n in str(config.methods).split(",") if n.strip()]
  built = {n: methods.build(n, config.method_configs[n], config.num_train_steps) for n in names}
  groups = {}
  for n, m in built.items():
    groups.setdefault(m.num_members, []).append(n)
  return {members: (group, built[group[0]]) for members, group in sorted(groups.items())}


def gib(n: float) -> str:
  return f"{n / 2**30:.2f}" if not math.isnan(n) else "n/c"
