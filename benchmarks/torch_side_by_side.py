"""One training step of a single model: churn_jax (JAX, XLA:CPU) against PyTorch on CPU.

  pip install -e '.[bench]'                                    # torch
  python benchmarks/torch_side_by_side.py                      # markdown table
  python benchmarks/torch_side_by_side.py --json               # one JSON object per case
  python benchmarks/torch_side_by_side.py --models=mlp,lenet5 --steps=20 --threads=1

JAX side: the real jitted train step of churn_jax.step for one model (method "baseline",
stack 1x1, strategy "loop", SGD with Nesterov momentum 0.9, lr 0.01), built by common.py as
in stack_throughput.py, on one device and, for models the trainer splits over one CPU
device per core (churn_jax/host_devices.py), also that way; timed after compilation and one
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

from churn_jax import host_devices
import common  # benchmarks/common.py

try:
  import torch
  from torch import nn
  import torch.nn.functional as F
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


def _bn(channels):
  # Flax BatchNorm momentum 0.9 (weight of the old running average) is torch's 0.1.
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class _BasicBlock(nn.Module):
  """churn_jax.models.resnet_cifar.BasicBlock: conv3x3-BN-relu-conv3x3-BN + shortcut, relu."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
    self.bn1 = _bn(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
    self.bn2 = _bn(cout)
    self.proj = None
    if stride != 1 or cin != cout:  # 1x1 conv + BN projection (option B), as in churn_jax.
      self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(y + (x if self.proj is None else self.proj(x)))


def _torch_model(name):
  """The churn_jax model `name` (10 classes) in torch.nn, NC[H]W layout."""
  if name == "mlp":  # MLP(hidden=(256, 256)).
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256),
                         nn.ReLU(), nn.Linear(256, 10))
  if name == "conv1d":  # Conv1DNet: 25 channels, kernels 5/3/3, stride 2, padding 1.
    return nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 25, 5, 2, 1), nn.ReLU(),
                         nn.Conv1d(25, 25, 3, 2, 1), nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(5 * 25, 10))  # 40 -> 19 -> 10 -> 5.
  if name == "lenet5":  # SAME 5x5 convs are padding 2; SAME 2x2 pools pad nothing on 32/16.
    return nn.Sequential(nn.Conv2d(3, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 8 * 16, 120), nn.ReLU(),
                         nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
  if name == "resnet20":  # ResNetCIFAR(depth=20): 3 blocks per stage, 16/32/64 filters.
    layers, cin = [nn.Conv2d(3, 16, 3, padding=1, bias=False), _bn(16), nn.ReLU()], 16
    for features, stride in zip((16, 32, 64), (1, 2, 2)):
      for b in range(3):
        layers.append(_BasicBlock(cin, features, stride if b == 0 else 1))
        cin = features
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)
  raise ValueError(f"no torch model for {name!r}; known: {', '.join(_INPUT)}")


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
    # What the trainer runs on CPU (churn_jax/host_devices.py): some models split the
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
