"""Device mesh with axes ('run', 'member', 'data') and the shardings of state and batches.

Runs are independent, so the run axis is the cheapest to shard: no communication. Devices
left over go to the member axis, then to the data axis (which needs cross-device reductions
of the loss and gradients; XLA inserts them).
"""

import math
from typing import Dict, Optional, Sequence

import jax
from jax.experimental import mesh_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("run", "member", "data")


def _largest_divisor(n: int, limit: int) -> int:
  """Largest d <= limit with d | n and d | limit (so the remaining devices still factor)."""
  return max(d for d in range(1, limit + 1) if n % d == 0 and limit % d == 0)


def mesh_shape(num_devices: int, num_runs: int, num_members: int, batch_size: int,
               strategy: str = "vmap"):
  """Splits `num_devices` over (run, member, data), preferring run, then member, then data.

  The "loop" strategy indexes runs and members one at a time; GSPMD cannot place those
  slices on different devices and would replicate the work, so with it only the batch is
  split (the 'data' axis).
  """
  if strategy == "loop":
    run = member = 1
  else:
    run = _largest_divisor(num_runs, num_devices)
    member = _largest_divisor(num_members, num_devices // run)
  data = num_devices // (run * member)
  if batch_size % data:
    raise ValueError(f"batch_size {batch_size} is not divisible by the data axis ({data} devices "
                     f"left after run={run}, member={member}); change batch_size or num_runs")
  return run, member, data


def parse_mesh(spec) -> Optional[Dict[str, int]]:
  """config.mesh -> {axis: size} (-1: the devices left), or None for "" / "auto".

  Accepts "run=2,member=1,data=4" or a mapping; axes not named get size 1, except that a
  spec naming no -1 axis and leaving devices over is refused later by `resolve_mesh_shape`.
  """
  if spec is None or (isinstance(spec, str) and spec.strip() in ("", "auto")):
    return None
  if isinstance(spec, str):
    items = [part.split("=") for part in spec.split(",") if part.strip()]
    if any(len(item) != 2 for item in items):
      raise ValueError(f"mesh {spec!r}: write it as 'run=R,member=M,data=D' (-1: the rest)")
    spec = {k.strip(): v.strip() for k, v in items}
  shape = {}
  for axis, size in dict(spec).items():
    if axis not in AXES:
      raise ValueError(f"mesh: unknown axis {axis!r}; axes: {', '.join(AXES)}")
    try:
      shape[axis] = int(size)
    except (TypeError, ValueError):
      raise ValueError(f"mesh: size of {axis!r} must be an integer, got {size!r}") from None
    if shape[axis] == 0 or shape[axis] < -1:
      raise ValueError(f"mesh: size of {axis!r} must be >= 1 or -1, got {size!r}")
  if sum(v == -1 for v in shape.values()) > 1:
    raise ValueError("mesh: at most one axis may be -1")
  return shape


def resolve_mesh_shape(spec: Dict[str, int], num_devices: int, num_runs: int,
                       num_members: int, batch_size: int, strategy: str = "vmap"):
  """(run, member, data) of an explicit config.mesh, checked against the stack and batch."""
  fixed = math.prod(v for v in spec.values() if v != -1)
  sizes = {a: spec.get(a, 1) for a in AXES}
  if -1 in sizes.values():
    if num_devices % fixed:
      raise ValueError(f"mesh {spec}: {num_devices} devices are not a multiple of {fixed}")
    sizes = {a: (num_devices // fixed if v == -1 else v) for a, v in sizes.items()}
  if math.prod(sizes.values()) != num_devices:
    raise ValueError(f"mesh {spec}: {math.prod(sizes.values())} devices, the process has "
                     f"{num_devices}")
  for axis, total in (("run", num_runs), ("member", num_members), ("data", batch_size)):
    if total % sizes[axis]:
      raise ValueError(f"mesh {spec}: the {axis} axis ({sizes[axis]}) does not divide "
                       f"{total}")
  if strategy == "loop" and sizes["run"] * sizes["member"] > 1:
    raise ValueError(f"mesh {spec}: the loop strategy runs members one at a time; shard only "
                     f"'data' (or use strategy=vmap)")
  return sizes["run"], sizes["member"], sizes["data"]


def make_mesh(num_runs: int, num_members: int, batch_size: int,
              devices: Optional[Sequence[jax.Device]] = None, strategy: str = "vmap",
              spec: Optional[Dict[str, int]] = None) -> Mesh:
  """The (run, member, data) mesh: automatic (`mesh_shape`), or `spec` (parse_mesh).

  Devices are ordered by jax.experimental.mesh_utils, which follows the physical topology
  of TPU slices (neighbours along the data axis, whose reductions communicate).
  """
  devices = list(devices if devices is not None else jax.devices())
  if spec is None:
    shape = mesh_shape(len(devices), num_runs, num_members, batch_size, strategy)
  else:
    shape = resolve_mesh_shape(spec, len(devices), num_runs, num_members, batch_size, strategy)
  try:
    grid = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, NotImplementedError, AssertionError):  # Unknown topology: given order.
    grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, AXES)


def eval_sharding(mesh: Mesh, batch_size: int) -> NamedSharding:
  """Evaluation inputs (B, ...) split over 'data' when it divides B, else replicated."""
  data = mesh.shape["data"]
  return NamedSharding(mesh, P("data") if batch_size % data == 0 else P())


def stacked_sharding(mesh: Mesh, tree):
  """Shards every leaf of `tree` (all with leading (R, M) axes) over (run, member)."""
  spec = NamedSharding(mesh, P("run", "member"))
  return jax.tree_util.tree_map(lambda _: spec, tree)


def per_run_sharding(mesh: Mesh) -> NamedSharding:
  """Leaves with one leading run axis (per-run rng keys, per-run metrics)."""
  return NamedSharding(mesh, P("run"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Training batches are (R, B, ...): runs over 'run', examples over 'data'."""
  return NamedSharding(mesh, P("run", "data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def num_mesh_devices(mesh: Mesh) -> int:
  return math.prod(mesh.devices.shape)
