"""One training step of a single model: churn_jax (JAX, XLA:CPU) against PyTorch on CPU.

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

_INPUT = common.INPUT_SHAPES  # NHWC in JAX.


def _jax_case(name, batch_size, steps, num_devices):
  """Median step seconds and parameter count of the churn_jax 1x1 train step."""
  train_step, state, batch = common.build_case(name, 1, 1, "loop", batch_size, num_devices)
  num_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  return common.time_steps(train_step, state, batch, steps)[0], num_params


def _torch_case(name, batch_size, steps, channels_last):
  """Median step seconds of an eager torch train step."""
  torch.manual_seed(0)
  model = _torch_model(name)
  shape = _INPUT[name]
  if len(shape) == 3:  # NHWC in JAX, NCHW in torch.
    shape = (shape[2], shape[0], shape[1])
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.normal(size=(batch_size,) + shape).astype(np.float32))
  y = torch.from_numpy(rng.integers(0, 10, size=batch_size))  # int64, as cross_entropy wants.
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
  model.train()  # BatchNorm uses batch statistics and updates its running averages.

  def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()

  for _ in range(2):  # Warm-up: allocator, oneDNN primitive caches, optimizer state.
    step()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
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
