"""One training step of a single model: churn_jax (JAX) against PyTorch, on CPU or one GPU.

  pip install -e '.[bench]'                                    # torch
  python benchmarks/torch_side_by_side.py                      # markdown table
  python benchmarks/torch_side_by_side.py --json               # one JSON object per case
  python benchmarks/torch_side_by_side.py --models=mlp,lenet5 --steps=20 --threads=1

JAX side: the real jitted train step of churn_jax.engine.step for one model (method "baseline",
stack 1x1, strategy "loop", SGD with Nesterov momentum 0.9, lr 0.01), built by common.py as
in stack_throughput.py, on one device and, for models the trainer splits over one CPU
device per core (churn_jax/runtime/host_devices.py), also that way; timed after compilation and one
warm-up step, synchronised with block_until_ready. PyTorch side: the same architecture
re-implemented layer for layer in torch.nn (equal parameter counts are checked), one eager
step of forward, cross-entropy, backward and torch.optim.SGD(nesterov=True) in train mode,
timed after two warm-up steps.
The 2-D conv nets are also timed with channels_last tensors on the torch side. Both report
the median of --steps steps on the same random batch. --threads sets torch's intra-op
threads; XLA:CPU keeps its own thread pool (one thread per core), so compare like with like
at the default --threads (all cores) or pin the process, e.g. with taskset.

GPU mode (--device=cuda, or auto when torch sees a GPU): PyTorch's usual fast variants on the
same GPU, each timed with torch.cuda.synchronize(): fp32, channels_last, bf16 autocast +
channels_last, and torch.compile of that (compilation in the warm-up). The JAX side is timed
for every --compute_dtypes value (float32; bfloat16 = config.compute_dtype, engine/numerics.py)
and, with --stack=5x2, also as the R x M stack against R*M separate torch steps.

  python benchmarks/torch_side_by_side.py --device=cuda --models=resnet20,resnet56 \
      --batch_size=1024 --compute_dtypes=float32,bfloat16 --stack=5x2 --json
"""

import json
import os
import statistics
import sys
import time

from absl import app, flags
import jax
import numpy as np

from churn_jax.runtime import host_devices
import common  # benchmarks/common.py

try:
  import torch
  import torch.nn.functional as F
  from torch_models import torch_model as _torch_model  # benchmarks/torch_models.py
except ImportError:
  sys.exit("torch is not installed: pip install -e '.[bench]'")

_MODELS = flags.DEFINE_list("models", ["mlp", "conv1d", "lenet5", "resnet20"], "Models.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per case (median reported).")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_THREADS = flags.DEFINE_integer("threads", os.cpu_count(), "torch.set_num_threads.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object per case instead of a table.")
_DEVICE = flags.DEFINE_enum("device", "auto", ["auto", "cpu", "cuda"],
                            "torch device; auto: cuda when torch sees a GPU.")
_DTYPES = flags.DEFINE_list("compute_dtypes", ["float32"], "JAX compute dtypes to time.")
_STACK = flags.DEFINE_string("stack", "", "Also time this R x M JAX stack (e.g. 5x2).")
_GPU_VARIANTS = ("default", "channels_last", "bf16_channels_last", "compile_bf16_channels_last")

_INPUT = common.INPUT_SHAPES  # NHWC in JAX.


def _jax_case(name, batch_size, steps, num_devices, dtype="float32", runs=1, members=1,
             strategy="loop"):
  """Median step seconds and parameter count of the churn_jax R x M train step."""
  from churn_jax.engine.numerics import Numerics  # pylint: disable=g-import-not-at-top
  train_step, state, batch = common.build_case(name, runs, members, strategy, batch_size,
                                               num_devices, Numerics(compute_dtype=dtype))
  num_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  return common.time_steps(train_step, state, batch, steps)[0], num_params


def _torch_case(name, batch_size, steps, channels_last, device="cpu", bf16=False,
                compile_=False):
  """Median step seconds of a torch train step (eager, or torch.compile'd)."""
  torch.manual_seed(0)
  model = _torch_model(name).to(device)
  shape = _INPUT[name]
  if len(shape) == 3:  # NHWC in JAX, NCHW in torch.
    shape = (shape[2], shape[0], shape[1])
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.normal(size=(batch_size,) + shape).astype(np.float32)).to(device)
  y = torch.from_numpy(rng.integers(0, 10, size=batch_size)).to(device)  # int64 labels.
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
  model.train()  # BatchNorm uses batch statistics and updates its running averages.

  forward = torch.compile(model) if compile_ else model
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
      loss = F.cross_entropy(forward(x), y)
    loss.backward()
    opt.step()

  for _ in range(3 if compile_ else 2):  # Warm-up: allocator, kernel caches, compilation.
    step()
  sync()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    sync()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _torch_variant(name, batch_size, steps, variant, device):
  return _torch_case(name, batch_size, steps, "channels_last" in variant, device,
                     bf16="bf16" in variant, compile_=variant.startswith("compile"))


def _gpu_main():
  """Every JAX dtype (and the stack) against every torch GPU variant, one line per case."""
  device = "cuda"
  for name in _MODELS.value:
    torch_ms = {}
    for variant in _GPU_VARIANTS if len(_INPUT[name]) == 3 else ("default", "compile"):
      try:
        torch_ms[variant] = 1e3 * _torch_variant(name, _BATCH.value, _STEPS.value,
                                                 variant, device)
      except Exception as e:  # pylint: disable=broad-except  # e.g. no triton for compile.
        print(json.dumps(dict(model=name, torch_variant=variant, error=str(e)[:200])),
              flush=True)
        continue
      print(json.dumps(dict(model=name, torch_variant=variant, torch_ms=torch_ms[variant],
                            batch_size=_BATCH.value, torch_version=torch.__version__)),
            flush=True)
    best = min(torch_ms.values()) if torch_ms else float("nan")
    cases = [(1, 1)]
    if _STACK.value:
      cases.append(tuple(int(v) for v in _STACK.value.split("x")))
    for runs, members in cases:
      for dtype in _DTYPES.value:
        for strategy in (("loop",) if runs * members == 1 else ("vmap", "loop")):
          jax_s, _ = _jax_case(name, _BATCH.value, _STEPS.value, 1, dtype, runs, members,
                               strategy)
          print(json.dumps(dict(
              model=name, stack=f"{runs}x{members}", strategy=strategy, compute_dtype=dtype,
              jax_ms=1e3 * jax_s, torch_best_ms_times_models=best * runs * members,
              ratio_jax_over_torch_best=1e3 * jax_s / (best * runs * members),
              images_per_s=runs * members * _BATCH.value / jax_s, batch_size=_BATCH.value,
              jax_version=jax.__version__, device=jax.devices()[0].device_kind)), flush=True)


def main(argv):
  del argv
  if _DEVICE.value == "cuda" or (_DEVICE.value == "auto" and torch.cuda.is_available()):
    return _gpu_main()
  torch.set_num_threads(_THREADS.value)
  host_devices.configure(host_devices.num_cores())  # Before any jax op.
  rows = []
  for name in _MODELS.value:
    jax_s, jax_params = _jax_case(name, _BATCH.value, _STEPS.value, 1)
    # What the trainer runs on CPU (churn_jax/runtime/host_devices.py): some models split the
    # batch over one device per core.
    devices = host_devices.auto_count(name, _BATCH.value, len(jax.devices()))
    jax_auto_s = jax_s if devices == 1 else _jax_case(name, _BATCH.value, _STEPS.value,
                                                      devices)[0]
    torch_params = sum(p.numel() for p in _torch_model(name).parameters())
    if jax_params != torch_params:
      sys.exit(f"{name}: parameter counts differ: jax {jax_params}, torch {torch_params}")
    variants = ["default", "channels_last"] if len(_INPUT[name]) == 3 else ["default"]
    for variant in variants:
      torch_s = _torch_case(name, _BATCH.value, _STEPS.value, variant == "channels_last")
      row = dict(model=name, variant=variant, params_jax=jax_params, params_torch=torch_params,
                 jax_ms=1e3 * jax_s, jax_auto_ms=1e3 * jax_auto_s, jax_auto_devices=devices,
                 torch_ms=1e3 * torch_s, ratio_jax_over_torch=jax_s / torch_s,
                 ratio_jax_auto_over_torch=jax_auto_s / torch_s, threads=_THREADS.value,
                 batch_size=_BATCH.value, steps=_STEPS.value, jax_version=jax.__version__,
                 torch_version=torch.__version__)
      rows.append(row)
      if _JSON.value:
        print(json.dumps(row), flush=True)
  if not _JSON.value:
    print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}, "
          f"{_THREADS.value} torch threads, batch {_BATCH.value}, median of {_STEPS.value} steps")
    print("| model | torch variant | params (jax = torch) | jax ms, 1 device | jax ms, trainer's "
          "CPU devices | torch ms | jax / torch | jax (trainer) / torch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
      print(f"| {r['model']} | {r['variant']} | {r['params_jax']:,} | {r['jax_ms']:.2f} | "
            f"{r['jax_auto_ms']:.2f} ({r['jax_auto_devices']}) | {r['torch_ms']:.2f} | "
            f"{r['ratio_jax_over_torch']:.2f} | {r['ratio_jax_auto_over_torch']:.2f} |")


if __name__ == "__main__":
  app.run(main)
