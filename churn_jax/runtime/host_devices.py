"""How many XLA:CPU devices a process exposes: one per core where that measured faster.

One XLA:CPU device runs each op on all cores, but small convolutions use them poorly: the
LeNet5 step at batch 128 took 58 ms on one device and 33 ms with its batch split over two
host devices, one per core (docs/PERFORMANCE.md). For the MLP and the MNIST-1D conv net the
cross-device reductions cost more than the step (about 1 ms against 1-2 ms), and ResNet-20,
whose weight gradients run chunked (models/layers.py), was as fast on one device (536 against
499 ms, and half the compile time), so they keep one device. The registry records the
measured choice per model (`splits_batch_on_cpu`); `config.cpu_devices` overrides it (0 = the
measured rule). The trainer's mesh puts the devices on the 'data' axis.

The count must be fixed before JAX initialises its backends (the first jax.devices() or array
op of the process), so entry points call `configure` first. Only the CPU platform is
affected: on a TPU or GPU host the accelerators are the devices either way.
"""

import os

from absl import logging
import jax

from churn_jax import models

_FORCE_FLAG = "xla_force_host_platform_device_count"


def num_cores() -> int:
  """Cores this process may run on (the affinity mask, not the machine's total)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not on Linux.
    return os.cpu_count() or 1


# Stacks of at least this many models keep one device even for models that split the batch:
# the LeNet5 4x2 stack measured 0.90x the separate steps on one device and 1.08-1.12x on
# two (docs/PERFORMANCE.md session 4; issue 27 on AMD Zen 4), while 1x1-1x2 gained from the
# split (0.70-0.81). With the loop strategy a bigger stack already gives each core work.
SPLIT_MAX_STACK = 3


def auto_count(model_name: str, batch_size: int, cores: int = 0, stack_size: int = 1) -> int:
  """The measured default: one device per core for models that split the batch and small
  stacks (R*M <= SPLIT_MAX_STACK models), else 1.

  The count divides `batch_size`, so the 'data' axis splits every batch evenly.
  """
  cores = cores or num_cores()
  if not models.splits_batch_on_cpu(model_name) or stack_size > SPLIT_MAX_STACK:
    return 1
  return max(d for d in range(1, cores + 1) if batch_size % d == 0)


def requested_count(cpu_devices: int, model_name: str, batch_size: int, num_runs: int) -> int:
  """`cpu_devices` (config.cpu_devices), or the automatic rule when it is 0."""
  count = int(cpu_devices)
  if count < 0:
    raise ValueError(f"cpu_devices must be >= 0 (0 = automatic), got {count}")
  if count:
    return count
  # The process serves every method; its smallest stack is R runs x 1 member.
  return auto_count(model_name, int(batch_size), stack_size=int(num_runs))


def configure(count: int) -> int:
  """Asks for `count` CPU devices; returns the number the process will have.

  A count fixed earlier (XLA_FLAGS with --xla_force_host_platform_device_count, as the
  sharding tests use, or backends already initialised by earlier work in this process) is
  kept and logged: changing it would need a new process.
  """
  if _FORCE_FLAG in os.environ.get("XLA_FLAGS", ""):
    logging.info("CPU device count fixed by XLA_FLAGS; cpu_devices=%d ignored", count)
    return len(jax.devices("cpu"))
  try:
    jax.config.update("jax_num_cpu_devices", int(count))
  except RuntimeError:
    have = len(jax.devices("cpu"))
    if have != count:
      logging.warning("JAX backends were initialised before cpu_devices=%d could apply; "
                      "training on %d CPU device(s)", count, have)
    return have
  return int(count)
