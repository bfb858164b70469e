"""Multi-host helpers: when to call jax.distributed.initialize, and which rows a host feeds.

The global batch size is a config value; it does not change with the number of devices or
hosts. On a multi-host TPU slice every host runs the same program, computes the same global
batch indices (they depend only on the run seeds and the step), reads and augments only its
own rows of the batch axis, and the trainer assembles the global array with
`global_batch` (jax.make_array_from_process_local_data). One host = the whole batch.

Which rows belong to a host: with the default data layout the batch axis is cut into
`process_count` equal contiguous blocks and host `process_index` takes block
`process_index` (`host_rows`). That matches the mesh when hosts lie along its 'data'
axis, which is what churn_jax.sharding.make_mesh yields when the run and member axes fit
inside one host; `rows_for_sharding` derives the rows from any sharding and says when a
layout cannot be fed by row slices.
"""

import functools
import os
from typing import Iterable, Iterator, Optional, Tuple

from absl import logging
import jax
import numpy as np

from churn_jax.data import ordering

# Cloud TPU VMs export these on every host of a slice; more than one worker = multi-host.
_TPU_HOSTS_ENV = "TPU_WORKER_HOSTNAMES"
# Set to 0 to skip initialisation (debugging one host of a slice), 1 to force it.
_FORCE_ENV = "CHURN_JAX_DISTRIBUTED"


def is_multihost_tpu(environ=None) -> bool:
  """True on a Cloud TPU VM that is one of several hosts of a slice (env-detected)."""
  environ = os.environ if environ is None else environ
  hosts = [h for h in environ.get(_TPU_HOSTS_ENV, "").split(",") if h.strip()]
  return len(hosts) > 1


def maybe_initialize(environ=None) -> bool:
  """Calls jax.distributed.initialize() on multi-host TPU slices only; returns whether it did.

  Must run before anything touches a JAX backend (jax.devices(), the first jnp op). On a
  single host, CPU or GPU it does nothing, so every entry point may call it unconditionally.
  """
  environ = os.environ if environ is None else environ
  force = environ.get(_FORCE_ENV, "").strip()
  if force == "0" or (force != "1" and not is_multihost_tpu(environ)):
    return False
  jax.distributed.initialize()  # TPU: coordinator and process ids come from the metadata.
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def host_rows(batch_size: int, process_index: Optional[int] = None,
              process_count: Optional[int] = None) -> Tuple[int, int]:
  """[start, stop) of the global batch axis that host `process_index` produces."""
  index = jax.process_index() if process_index is None else int(process_index)
  count = jax.process_count() if process_count is None else int(process_count)
  if not 0 <= index < count:
    raise ValueError(f"process_index {index} is not in [0, {count})")
  if batch_size % count:
    raise ValueError(f"batch_size {batch_size} is not divisible by the {count} hosts; "
                     f"the global batch is split evenly between hosts")
  per_host = batch_size // count
  return index * per_host, (index + 1) * per_host


def rows_for_sharding(sharding: jax.sharding.Sharding,
                      global_shape: Tuple[int, ...]) -> Tuple[int, int]:
  """[start, stop) of the batch axis (axis 1 of (R, B, ...)) this host's devices hold.

  Raises ValueError when this host's devices hold only some of the runs or a non-contiguous
  set of rows: such a layout cannot be fed by slicing rows, so change the mesh (fewer runs
  per slice, or runs within one host).
  """
  num_runs, batch = global_shape[:2]
  index_map = sharding.addressable_devices_indices_map(tuple(global_shape))
  starts, stops = [], []
  for idx in index_map.values():
    runs = range(*idx[0].indices(num_runs))
    if len(runs) != num_runs:
      raise ValueError(f"this host's devices hold runs {list(runs)} of {num_runs}; host row "
                       f"slicing needs every run on every host")
    rows = idx[1].indices(batch)
    starts.append(rows[0])
    stops.append(rows[1])
  start, stop = min(starts), max(stops)
  covered = np.zeros(stop - start, bool)
  for a, b in zip(starts, stops):
    covered[a - start:b - start] = True
  if not covered.all():
    raise ValueError(f"this host's devices hold non-contiguous rows of the batch "
                     f"({sorted(set(zip(starts, stops)))})")
  return start, stop


def global_batch(local_batch, sharding: jax.sharding.Sharding, global_batch_size: int,
                 batch_axis: int = 1):
  """Assembles host-local (R, b, ...) numpy batches into global (R, B, ...) jax Arrays.

  On one host this is jax.device_put; on several each host passes only its rows.
  `batch_axis` is where b is (2 for a stack of steps (K, R, b, ...)).
  """
  if jax.process_count() == 1:
    return jax.device_put(local_batch, sharding)

  def one(x):
    shape = x.shape[:batch_axis] + (global_batch_size,) + x.shape[batch_axis + 1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)
  return jax.tree_util.tree_map(one, local_batch)


def prefetch_to_device(local_batches: Iterable, sharding: jax.sharding.NamedSharding,
                       global_batch_size: int, size: int = 2, group_steps: int = 16,
                       group_bytes: int = 4 << 20) -> Iterator:
  """Yields `global_batch` of each host batch, made ready on device ahead by a thread.

  A background thread (`ordering.prefetch`) collects consecutive host batches into groups
  of `group_steps` steps (fewer when a batch is large: at most `group_bytes` a group),
  stacks each group, transfers it with one `global_batch` call, splits it into per-step
  arrays laid out as `sharding` with one jitted slicing program, and waits until they are on
  device; the training loop only pops them. One transfer per group instead of one per step
  and array is what keeps a millisecond step fed (benchmarks/input_pipeline.py). The first
  batch and a shorter last group go one step at a time. Up to `size` groups wait in the
  queue. An error of `local_batches` is raised where its batch would have been yielded;
  closing the returned generator stops the thread.
  """
  local_batches = iter(local_batches)
  stacked_sharding = jax.sharding.NamedSharding(
      sharding.mesh, jax.sharding.PartitionSpec(None, *sharding.spec))

  def one_by_one(group):
    return [jax.block_until_ready(global_batch(b, sharding, global_batch_size)) for b in group]

  def groups():  # Runs in the prefetch thread.
    steps = 1
    while True:
      group = []
      try:
        for _ in range(steps):
          group.append(next(local_batches))
      except StopIteration:
        pass
      except BaseException:  # pylint: disable=broad-except
        yield one_by_one(group)  # The batches before the failing one come first.
        raise
      if not group:
        return
      if len(group) == steps > 1:
        stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *group)
        on_device = global_batch(stacked, stacked_sharding, global_batch_size, batch_axis=2)
        yield jax.block_until_ready(_unstack(steps, sharding)(on_device))
      else:
        yield one_by_one(group)
      nbytes = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(group[0]))
      steps = max(1, min(group_steps, group_bytes // max(nbytes, 1)))

  return _flatten(ordering.prefetch(groups(), size))


@functools.lru_cache(maxsize=16)
def _unstack(num_steps: int, sharding: jax.sharding.NamedSharding):
  """Jitted: a tree of (num_steps, ...) leaves -> num_steps trees laid out as `sharding`."""
  def unstack(tree):
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], tree) for i in range(num_steps)]
  return jax.jit(unstack, out_shardings=sharding)


def _flatten(groups: Iterator) -> Iterator:
  """The items of each yielded list in turn; closing it closes `groups`."""
  try:
    for group in groups:
      yield from group
  finally:
    groups.close()
