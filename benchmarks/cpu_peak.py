"""The CPU's FP32 peak, and the fraction of it one training step reaches.

  python benchmarks/cpu_peak.py                      # ResNet-20, markdown
  python benchmarks/cpu_peak.py --models=resnet20,lenet5 --json

Three numbers for the machine:
  * the nominal peak: cores x clock (/proc/cpuinfo "cpu MHz") x FP32 FLOP per cycle per core
    from the vector ISA (FMA on 256-bit AVX2: 2 pipes x 8 lanes x 2 = 32; AVX-512: 64). The
    pipe count is the usual one for current x86 server cores, an assumption, not a reading.
  * the measured matmul peak: a 4096^3 FP32 matmul jitted by XLA on all cores (one device),
    the best dense arithmetic XLA:CPU reaches here.
  * for each model, the FLOPs of its single-model train step as counted by XLA's cost
    analysis of the compiled step, divided by the measured step time: on one device, and
    with the batch split over one CPU device per core (what the trainer does for conv nets).
"""

import json
import os
import re
import time

from absl import app, flags
import jax
import jax.numpy as jnp

from churn_jax.runtime import host_devices
import common  # benchmarks/common.py

_MODELS = flags.DEFINE_list("models", ["resnet20"], "Models whose train step is measured.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (median reported).")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_JSON = flags.DEFINE_bool("json", False, "One JSON object per line instead of markdown.")


def _clock_ghz() -> float:
  with open("/proc/cpuinfo") as f:
    mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)", f.read(), re.M)
  return max(float(m) for m in mhz) / 1e3 if mhz else float("nan")


def _flop_per_cycle() -> int:
  with open("/proc/cpuinfo") as f:
    flags_line = re.search(r"^flags\s*:(.*)$", f.read(), re.M).group(1).split()
  if "avx512f" in flags_line:
    return 64
  if "avx2" in flags_line and "fma" in flags_line:
    return 32
  return 8  # SSE: 4 lanes, mul + add.


def _matmul_gflops(n=4096, repeats=5) -> float:
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  mm = jax.jit(jnp.dot, device=jax.devices()[0])
  jax.block_until_ready(mm(a, a))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(mm(a, a))
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best / 1e9


def _step_flops(train_step, state, batch) -> float:
  analysis = train_step.lower(state, batch, {}).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older jax: one dict per program.
    analysis = analysis[0]
  return float(analysis["flops"])


def main(argv):
  del argv
  cores = host_devices.num_cores()
  host_devices.configure(cores)  # Before any jax op.
  nominal = cores * _clock_ghz() * _flop_per_cycle()
  matmul = _matmul_gflops()
  rows = [dict(what="nominal FP32 peak", gflops=nominal,
               detail=f"{cores} cores x {_clock_ghz():.2f} GHz x {_flop_per_cycle()} FLOP/cycle"),
          dict(what="XLA 4096^3 matmul", gflops=matmul, detail="1 device, all cores")]
  for name in _MODELS.value:
    flops = None
    for devices in sorted({1, len(jax.devices())}):
      train_step, state, batch = common.build_case(name, 1, 1, "loop", _BATCH.value, devices)
      if flops is None:  # XLA counts the whole program: take it from the 1-device compile.
        flops = _step_flops(train_step, state, batch)
      step_s, _ = common.time_steps(train_step, state, batch, _STEPS.value)
      rate = flops / step_s / 1e9
      rows.append(dict(what=f"{name} train step, {devices} device(s)", gflops=rate,
                       detail=f"{flops / 1e9:.2f} GFLOP in {1e3 * step_s:.0f} ms",
                       step_ms=1e3 * step_s, step_gflop=flops / 1e9))
  for r in rows:
    r.update(fraction_of_nominal=r["gflops"] / nominal, fraction_of_matmul=r["gflops"] / matmul,
             backend=jax.default_backend(), cpu_count=os.cpu_count())
  if _JSON.value:
    for r in rows:
      print(json.dumps(r))
    return
  print("| what | GFLOP/s | of nominal peak | of matmul peak | detail |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['what']} | {r['gflops']:.1f} | {100 * r['fraction_of_nominal']:.0f}% | "
          f"{100 * r['fraction_of_matmul']:.0f}% | {r['detail']} |")


if __name__ == "__main__":
  app.run(main)
