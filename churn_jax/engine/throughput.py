"""Training throughput and model FLOP utilisation (MFU).

FLOPs per step come from XLA's cost analysis of the lowered step (what the program
computes, the backward pass and optimizer included), so no per-model formula can drift from
the code. MFU is achieved FLOP/s over the device's peak for the compute dtype; devices not
in PEAK_TFLOPS (CPUs) get no MFU.
"""

import dataclasses
import time
from typing import Optional

from absl import logging
import jax

# Dense peak TFLOP/s per chip from the vendors' data sheets (no sparsity). GPUs: "float32"
# is the CUDA-core FP32 rate (what highest-precision float32 matmuls get; with TF32 enabled
# XLA may run faster than it). TPUs: float32 matmuls run as bf16 passes, so one bf16 peak
# (per chip as JAX counts devices: v2/v3 expose 2 cores per chip, the per-core rate here).
PEAK_TFLOPS = {
    "H200": {"bfloat16": 989.0, "float32": 67.0},
    "H100": {"bfloat16": 989.0, "float32": 67.0},
    "A100": {"bfloat16": 312.0, "float32": 19.5},
    "L4": {"bfloat16": 121.0, "float32": 30.3},
    "V100": {"bfloat16": 125.0, "float32": 15.7},  # fp16 tensor cores; no bf16.
    "TPU v2": {"bfloat16": 22.5, "float32": 22.5},
    "TPU v3": {"bfloat16": 61.5, "float32": 61.5},
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
    "TPU v5 lite": {"bfloat16": 197.0, "float32": 197.0},
    "TPU v5p": {"bfloat16": 459.0, "float32": 459.0},
    "TPU v6 lite": {"bfloat16": 918.0, "float32": 918.0},
}


def peak_flops(device_kind: str, compute_dtype: str) -> Optional[float]:
  """Peak FLOP/s of one device of `device_kind` (jax.Device.device_kind), or None."""
  for name in sorted(PEAK_TFLOPS, key=len, reverse=True):  # "TPU v5p" before "TPU v5".
    if name.lower() in device_kind.lower():
      return PEAK_TFLOPS[name][compute_dtype] * 1e12
  return None


def step_flops(jitted_step, *args) -> Optional[float]:
  """FLOPs of one call of `jitted_step(*args)` from XLA's cost analysis, or None.

  Lowering only (no compilation): cheap next to the compile the first call does.
  """
  try:
    cost = jitted_step.lower(*args).cost_analysis()
  except Exception as e:  # pylint: disable=broad-except  # Never fail training for a number.
    logging.warning("no cost analysis of the step: %s", e)
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


@dataclasses.dataclass
class Meter:
  """Throughput between host syncs: call `mark(step)` right after the host has waited for
  `step` (a log step reads the loss); the first mark comes after the first step, so
  compilation is not counted."""
  examples_per_step: int
  flops_per_step: Optional[float] = None
  peak: Optional[float] = None       # Summed over the devices the step runs on.
  first: Optional[tuple] = None      # (step, time) of the first mark.
  last: Optional[tuple] = None

  def mark(self, step: int):
    now = (step, time.perf_counter())
    self.first = self.first or now
    self.last = now

  def summary(self) -> dict:
    """examples/s, step time, FLOP/s and MFU since the first mark; {} before two marks."""
    if self.first is None or self.last[0] <= self.first[0]:
      return {}
    steps, seconds = self.last[0] - self.first[0], self.last[1] - self.first[1]
    out = {"steps_per_second": steps / seconds, "step_seconds": seconds / steps,
           "examples_per_second": self.examples_per_step * steps / seconds}
    if self.flops_per_step:
      out["flops_per_step"] = self.flops_per_step
      out["achieved_flops_per_second"] = self.flops_per_step * steps / seconds
      if self.peak:
        out["mfu"] = out["achieved_flops_per_second"] / self.peak
    return out


def device_peak(devices, compute_dtype: str) -> Optional[float]:
  """Peak FLOP/s of `devices` together, or None when any kind is unknown."""
  peaks = [peak_flops(d.device_kind, compute_dtype) for d in devices]
  return None if not peaks or None in peaks else sum(peaks)


def trace_window(spec: str) -> Optional[tuple]:
  """(first, last) step of the jax.profiler trace `spec` asks for, or None.

  spec (config.profile_steps): "" (none) or "N:K", K steps from step N; the trace goes to
  WORKDIR/profile (open it with TensorBoard's profile plugin or Perfetto).
  """
  spec = str(spec or "")
  if not spec:
    return None
  first, count = (int(v) for v in spec.split(":"))
  return first, first + count - 1
