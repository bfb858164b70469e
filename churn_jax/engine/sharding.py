"""Device mesh with axes ('run', 'member', 'data') and the shardings of state and batches.

Runs are independent, so the run axis is the cheapest to shard: no communication. Devices
left over go to the member axis, then to the data axis (which needs cross-device reductions
of the loss and gradients; XLA inserts them).
"""

import math
from typing import Optional, Sequence

import jax
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


def make_mesh(num_runs: int, num_members: int, batch_size: int,
              devices: Optional[Sequence[jax.Device]] = None, strategy: str = "vmap") -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(len(devices), num_runs, num_members, batch_size, strategy)
  return Mesh(np.asarray(devices).reshape(shape), AXES)


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
