"""Where the time of one CPU train step goes: XLA thunks by kind, and torch's ops beside them.

  python benchmarks/profile_step.py --model=resnet20              # JAX step, by category
  python benchmarks/profile_step.py --model=lenet5 --torch --top=15

JAX: the single-model train step of common.py (the trainer's step, batch 128) is traced with
jax.profiler for --steps steps after warm-up; every thunk of the compiled program is an event
named after its HLO instruction, which the optimized HLO (compiled.as_text()) maps to what
it computes: a convolution's forward pass, input gradient or weight gradient (from the JAX
op_name and window of the convolution, inside a YNNPACK fusion or run by Eigen), a transpose
or copy, a reduction, an elementwise fusion. Caveat, checked on the traces: an Eigen
convolution thunk completes asynchronously, so its event can be far shorter than its work
(0.1 to 4 ms for the same 32x32x16 convolution); the "unattributed" row (step wall time minus
the events on the executing threads, when positive) is where that time shows. YNNPACK and
loop fusions run inside their events.

torch (--torch): torch.profiler's self CPU time per aten op for the same model and batch in
channels_last (torch_side_by_side.py's model), averaged over --steps steps.
"""

import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

from absl import app, flags
import jax

from churn_jax.runtime import host_devices
import common  # benchmarks/common.py

_MODEL = flags.DEFINE_string("model", "resnet20", "Model.")
_DEVICES = flags.DEFINE_integer("devices", 1, "CPU devices the batch is split over.")
_STEPS = flags.DEFINE_integer("steps", 5, "Profiled steps.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_TOP = flags.DEFINE_integer("top", 0, "Also list the N most expensive HLO instructions.")
_TORCH = flags.DEFINE_bool("torch", False, "Also profile the torch step (needs torch).")


def _instructions(hlo_text):
  """HLO instruction name -> (its line, the lines of the computation it calls or None)."""
  comps, current = {}, None
  for line in hlo_text.splitlines():
    m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
    if m and not line.startswith(" "):
      current = comps.setdefault(m.group(1), [])
    elif current is not None and line.startswith("  "):
      current.append(line)
  instructions = {}
  for lines in comps.values():
    for line in lines:
      m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (.*)$", line)
      if m:
        called = re.search(r"calls=%([\w.\-]+)", m.group(2))
        instructions[m.group(1)] = (m.group(2), comps.get(called.group(1)) if called else None)
  return instructions


def _category(name, instruction):
  """What an HLO instruction computes, in the profile's categories."""
  line, body = instruction
  convs = [line] if " convolution(" in line else [l for l in body or [] if " convolution(" in l]
  if convs:
    runtime = "YNNPACK" if '"__ynn_fusion"' in line else "Eigen"
    op = re.search(r'op_name="([^"]*)"', convs[0]) or re.search(r'op_name="([^"]*)"', line)
    op = op.group(1) if op else ""
    window = re.search(r"size=(\d+)", convs[0])
    if window and int(window.group(1)) > 7:  # A window the size of a feature map.
      kind = "weight gradient"
    elif "transpose(" in op:
      kind = "input gradient"
    else:
      kind = "forward"
    return f"conv {kind} [{runtime}]"
  if "transpose" in name or name.startswith("copy"):
    return "transpose / copy"
  if "reduce-window" in name or "scatter" in name or "select-and-scatter" in line:
    return "pooling (reduce-window, scatter)"
  if "reduce" in name or (body and any(" reduce(" in l for l in body)):
    return "reductions"
  if name.startswith("dot") or " dot(" in line or (body and any(" dot(" in l for l in body)):
    return "dense layers (dot)"
  return "elementwise and other fusions"


def _jax_profile():
  train_step, state, batch = common.build_case(_MODEL.value, 1, 1, "loop", _BATCH.value,
                                               _DEVICES.value)
  compiled = train_step.lower(state, batch, {}).compile()
  instructions = _instructions(compiled.as_text())
  for _ in range(2):
    state, _ = compiled(state, batch, {})
    jax.block_until_ready(state)
  with tempfile.TemporaryDirectory() as trace_dir:
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(_STEPS.value):
        state, _ = compiled(state, batch, {})
        jax.block_until_ready(state)
    wall = (time.perf_counter() - start) / _STEPS.value
    path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
      events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
  per_category, per_op = collections.Counter(), collections.Counter()
  waited = 0.0
  for e in events:
    if e["name"] == "ThunkExecutor::Execute (wait for completion)":
      waited += e["dur"]
    if e["name"] in instructions:
      per_category[_category(e["name"], instructions[e["name"]])] += e["dur"]
      per_op[e["name"]] += e["dur"]
  n = _STEPS.value
  step_us = waited / n / _DEVICES.value
  total = sum(per_category.values()) / n / _DEVICES.value
  print(f"JAX {_MODEL.value}, batch {_BATCH.value}, {_DEVICES.value} device(s): step "
        f"{1e3 * wall:.1f} ms under the profiler (executor {step_us / 1e3:.1f} ms), thunk "
        f"events {total / 1e3:.1f} ms per device, {n} steps")
  print("| category | ms per step | share of thunk time |")
  print("|---|---|---|")
  for category, us in per_category.most_common():
    us = us / n / _DEVICES.value
    print(f"| {category} | {us / 1e3:.1f} | {100 * us / total:.0f}% |")
  if step_us > total:
    print(f"| unattributed (async Eigen convolutions, gaps) | {(step_us - total) / 1e3:.1f} | |")
  if _TOP.value:
    print("| HLO instruction | ms per step | category |")
    print("|---|---|---|")
    for name, us in per_op.most_common(_TOP.value):
      print(f"| {name} | {us / n / _DEVICES.value / 1e3:.2f} | "
            f"{_category(name, instructions[name])} |")


def _torch_profile():
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch_models  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = torch_models.torch_model(_MODEL.value).to(memory_format=torch.channels_last)
  h, w, c = common.INPUT_SHAPES[_MODEL.value]
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.normal(size=(_BATCH.value, c, h, w)).astype(np.float32))
  x = x.contiguous(memory_format=torch.channels_last)
  y = torch.from_numpy(rng.integers(0, 10, size=_BATCH.value))
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
  model.train()

  def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()

  for _ in range(3):
    step()
  n = _STEPS.value
  start = time.perf_counter()
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(n):
      step()
  wall = (time.perf_counter() - start) / n
  rows = sorted(prof.key_averages(), key=lambda r: -r.self_cpu_time_total)
  total = sum(r.self_cpu_time_total for r in rows)
  print(f"torch {torch.__version__} {_MODEL.value} channels_last, {torch.get_num_threads()} "
        f"threads: step {1e3 * wall:.1f} ms under the profiler, {n} steps")
  print("| aten op | ms per step (self) | share | calls per step |")
  print("|---|---|---|---|")
  for r in rows[:12]:
    print(f"| {r.key} | {r.self_cpu_time_total / n / 1e3:.1f} | "
          f"{100 * r.self_cpu_time_total / total:.0f}% | {r.count // n} |")


def main(argv):
  del argv
  host_devices.configure(max(_DEVICES.value, 1))  # Before any jax op.
  _jax_profile()
  if _TORCH.value:
    _torch_profile()


if __name__ == "__main__":
  app.run(main)
