"""The study config read once, at the top: the typed values the lower layers take.

Layers below the study (engine, runtime, outputs, data) never receive the whole config tree:
the trainer builds their settings here, from the validated config, and hands them down as
small values (tests/layering_test.py checks that no function below `configs` takes a
`config`). One function per consumer, so following a key from the config file to the code
that uses it passes through this one module.
"""

from typing import List, Optional, Tuple

from churn_jax.engine import numerics, throughput
from churn_jax.outputs import observer as observer_lib
from churn_jax.runtime import host_devices


def numerics_of(config) -> numerics.Numerics:
  """compute_dtype, matmul_precision, remat, microbatches, steps_per_loop."""
  return numerics.Numerics(compute_dtype=str(config.get("compute_dtype", "float32")),
                           matmul_precision=str(config.get("matmul_precision", "default")),
                           remat=bool(config.get("remat", False)),
                           microbatches=int(config.get("microbatches", 1)),
                           steps_per_loop=int(config.get("steps_per_loop", 1)))


def check_numerics(config) -> List[str]:
  """One-line problems of the numerics fields of `config` (empty list: fine)."""
  problems = []
  dtype = config.get("compute_dtype", "float32")
  if dtype not in numerics.COMPUTE_DTYPES:
    problems.append(f"compute_dtype {dtype!r} unknown; known: {', '.join(numerics.COMPUTE_DTYPES)}")
  precision = config.get("matmul_precision", "default")
  if precision not in numerics.MATMUL_PRECISIONS:
    problems.append(f"matmul_precision {precision!r} unknown; known: "
                    f"{', '.join(numerics.MATMUL_PRECISIONS)}")
  if not isinstance(config.get("remat", False), bool):
    problems.append(f"remat must be True or False, got {config.get('remat')!r}")
  for key in ("microbatches", "steps_per_loop"):
    value = config.get(key, 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      problems.append(f"{key} must be an integer >= 1, got {value!r}")
  micro = config.get("microbatches", 1)
  if isinstance(micro, int) and micro >= 1 and int(config.get("batch_size", 1)) % micro:
    problems.append(f"batch_size {config.get('batch_size')} is not divisible by microbatches "
                    f"{micro}")
  return problems


def cpu_device_count(config) -> int:
  """The CPU devices this process asks for (config.cpu_devices, 0 = the measured rule)."""
  return host_devices.requested_count(int(config.get("cpu_devices", 0)), config.model.name,
                                      int(config.batch_size), int(config.num_runs))


def trace_window(config) -> Optional[Tuple[int, int]]:
  """The profiler trace's steps (config.profile_steps)."""
  return throughput.trace_window(config.get("profile_steps", ""))


def method_observer(workdir: str, config, method) -> observer_lib.MethodObserver:
  """The observer of one method: its runs and the study's LR schedule."""
  return observer_lib.MethodObserver(
      workdir, method, range(int(config.num_runs)), observer_lib.learning_rate_fn(config.lr))
