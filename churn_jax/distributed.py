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

import os
from typing import Optional, Tuple

from absl import logging
import jax
import numpy as np

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


def global_batch(local_batch, sharding: jax.sharding.Sharding, global_batch_size: int):
  """Assembles host-local (R, b, ...) numpy batches into global (R, B, ...) jax Arrays.

  On one host this is jax.device_put; on several each host passes only its rows.
  """
  if jax.process_count() == 1:
    return jax.device_put(local_batch, sharding)

  def one(x):
    shape = (x.shape[0], global_batch_size) + tuple(x.shape[2:])
    return jax.make_array_from_process_local_data(sharding, x, shape)
  return jax.tree_util.tree_map(one, local_batch)
