"""Multi-process runtime: when to initialise it, which block of a batch a process feeds, and
how global arrays come back to the host.

The global batch size is a config value; it does not change with the number of devices or
processes. Every process runs the same program and computes the same batch indices (they
depend only on the run seeds and the step). Which part of a batch a process produces is
derived from the batch sharding, never assumed: `host_block` reads, from
`sharding.addressable_devices_indices_map`, the [start, stop) of every leading axis (run,
[member,] row) that this process's devices hold, for whatever mesh make_mesh chose (runs,
members or rows across processes). The trainer asks the source for exactly those runs (their
seeds) and rows, and `global_batch` assembles the global array with
jax.make_array_from_process_local_data. One process = the whole batch.

Arrays that span processes cannot be read with np.asarray on any one of them; `to_host`
gathers them (multihost_utils.process_allgather) on every process, which is a collective:
all processes must call it at the same point of the program.
"""

import functools
import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from churn_jax.runtime import prefetch as prefetch_lib

# Debugging overrides (normally jax.distributed.initialize() detects the cluster itself):
#   CHURN_JAX_DISTRIBUTED=0 skips initialisation (one host of a slice on its own), =1 forces
#   it (jax's cluster detection must then succeed);
#   CHURN_JAX_COORDINATOR=host:port with CHURN_JAX_NUM_PROCESSES and CHURN_JAX_PROCESS_ID
#   start a cluster by hand (several processes on one machine, as tests/runtime/multihost_test.py).
#   CHURN_JAX_HEARTBEAT_TIMEOUT: seconds after which a silent peer fails the others (jax's
#   default is 100).
_FORCE_ENV = "CHURN_JAX_DISTRIBUTED"
_COORDINATOR_ENV = "CHURN_JAX_COORDINATOR"
_NUM_PROCESSES_ENV = "CHURN_JAX_NUM_PROCESSES"
_PROCESS_ID_ENV = "CHURN_JAX_PROCESS_ID"
_HEARTBEAT_ENV = "CHURN_JAX_HEARTBEAT_TIMEOUT"


def detected_cluster() -> Optional[str]:
  """The cluster environment jax.distributed.initialize() would detect, or None.

  Uses JAX's own detectors (Cloud TPU VM via the metadata server, GKE TPU, SLURM, Open MPI,
  Kubernetes; the opt-in mpi4py one excluded), so churn_jax initialises exactly where JAX
  knows how to. They are private to jax 0.10.2; a JAX without them means "ask JAX" (None
  here, and CHURN_JAX_DISTRIBUTED=1 forces the call).
  """
  try:
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  for env in clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
    if not env.opt_in_only_method and env.is_env_present():
      return env.__name__
  return None


def maybe_initialize(environ=None) -> bool:
  """Calls jax.distributed.initialize() where a cluster is detected; returns whether it did.

  Must run before anything touches a JAX backend (jax.devices(), the first jnp op): it
  touches none itself, so the CPU device count (host_devices.configure) can still be set
  after it. On a single machine with no cluster environment it does nothing, so every entry
  point may call it unconditionally.
  """
  environ = os.environ if environ is None else environ
  force = environ.get(_FORCE_ENV, "").strip()
  if force == "0":
    return False
  kwargs = {}
  if environ.get(_HEARTBEAT_ENV):
    kwargs["heartbeat_timeout_seconds"] = _int_env(environ, _HEARTBEAT_ENV, 1)
  if environ.get(_COORDINATOR_ENV):
    count = _int_env(environ, _NUM_PROCESSES_ENV, 1)
    index = _int_env(environ, _PROCESS_ID_ENV, 0)
    if index >= count:
      raise ValueError(f"{_PROCESS_ID_ENV}={index} is not below {_NUM_PROCESSES_ENV}={count}")
    kwargs.update(coordinator_address=environ[_COORDINATOR_ENV], num_processes=count,
                  process_id=index)
    how = "set by " + _COORDINATOR_ENV
  else:
    how = detected_cluster()
    if how is None and force != "1":
      return False
    if how == "SlurmCluster":
      devices = slurm_local_device_ids(environ)
      if devices is not None:
        kwargs["local_device_ids"] = devices
  # Detection fills whatever kwargs leave unset. A peer that stops sending heartbeats for
  # heartbeat_timeout_seconds makes JAX's client end this process (a C++ fatal log naming
  # the lost task, exit by abort): no process waits forever for a dead one. A Python
  # handler is not possible in jax 0.10.2: initialize() takes none, and the client's
  # missed_heartbeat_callback, given a Python function, aborts with std::bad_cast.
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed initialised (%s)", how or "forced")
  return True


def _int_env(environ, name: str, minimum: int) -> int:
  """An integer environment variable >= `minimum`; ValueError (one line) otherwise."""
  text = environ.get(name, "").strip()
  try:
    value = int(text)
  except ValueError:
    raise ValueError(f"{name}={text!r} is not an integer >= {minimum}") from None
  if value < minimum:
    raise ValueError(f"{name}={value} is not an integer >= {minimum}")
  return value


def _tasks_per_node(spec: str) -> List[int]:
  """SLURM's '8(x2),4' -> [8, 8, 4] (SLURM_STEP_TASKS_PER_NODE, one entry per node)."""
  counts = []
  for part in spec.split(","):
    count, _, repeat = part.partition("(x")
    counts += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
  return counts


def slurm_local_device_ids(environ) -> Optional[List[int]]:
  """The GPUs this SLURM task drives: None for JAX's default (one GPU per task), or all.

  JAX gives every SLURM task the one GPU of its local rank, so a single task on a node (a
  plain `srun --pty`, or --ntasks-per-node=1) would silently train on 1 of 8 GPUs. One task
  on its node drives all the node's GPUs; one task per GPU is JAX's default; any other count
  raises ValueError naming both numbers.
  """
  visible = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
  if visible:
    gpus = len([g for g in visible.split(",") if g.strip()])
  else:
    gpus = int(environ.get("SLURM_GPUS_ON_NODE", "0") or 0)
  spec = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
  if spec:
    per_node = _tasks_per_node(spec)
    tasks = per_node[min(int(environ.get("SLURM_NODEID", "0")), len(per_node) - 1)]
  else:
    tasks = 1 if environ.get("SLURM_NTASKS") == "1" else None
  if gpus <= 1 or tasks is None or tasks == gpus:
    return None
  if tasks == 1:
    logging.info("SLURM: one task on this node drives its %d GPUs", gpus)
    return list(range(gpus))
  raise ValueError(f"SLURM started {tasks} tasks on this node for its {gpus} GPUs; start one "
                   f"task per GPU (--ntasks-per-node={gpus}) or one per node")


def host_rows(batch_size: int, process_index: Optional[int] = None,
              process_count: Optional[int] = None) -> Tuple[int, int]:
  """[start, stop) of the batch axis when hosts split it evenly in process order.

  Only a fallback for sources used outside the trainer; the trainer passes the rows that
  `host_block` derives from the sharding.
  """
  index = jax.process_index() if process_index is None else int(process_index)
  count = jax.process_count() if process_count is None else int(process_count)
  if not 0 <= index < count:
    raise ValueError(f"process_index {index} is not in [0, {count})")
  if batch_size % count:
    raise ValueError(f"batch_size {batch_size} is not divisible by the {count} hosts; "
                     f"the global batch is split evenly between hosts")
  per_host = batch_size // count
  return index * per_host, (index + 1) * per_host


def host_block(sharding: jax.sharding.Sharding,
               leading_shape: Sequence[int]) -> Tuple[Tuple[int, int], ...]:
  """[start, stop) of every leading axis of a batch that this process's devices hold.

  `leading_shape` holds the global sizes of the axes the sharding's spec names, e.g. (R, B)
  or (R, M, B); axes after them are never split. The devices' blocks must tile one box
  (true of every mesh make_mesh builds, whichever axes cross processes); otherwise a
  process would have to produce rows it does not hold, and this raises ValueError.
  """
  shape = tuple(int(n) for n in leading_shape)
  held = [[idx[a].indices(n)[:2] for a, n in enumerate(shape)]
          for idx in sharding.addressable_devices_indices_map(shape).values()]
  box = tuple((min(r[a][0] for r in held), max(r[a][1] for r in held))
              for a in range(len(shape)))
  covered = np.zeros([stop - start for start, stop in box], bool)
  for ranges in held:
    covered[tuple(slice(s - b0, e - b0) for (s, e), (b0, _) in zip(ranges, box))] = True
  if not covered.all():
    raise ValueError(f"the devices of process {jax.process_index()} hold a part of the "
                     f"{shape} batch that is not one block ({sorted(map(tuple, held))}); "
                     f"use a mesh whose process boundaries cut whole blocks")
  return box


def rows_for_sharding(sharding: jax.sharding.Sharding,
                      global_shape: Tuple[int, ...]) -> Tuple[int, int]:
  """[start, stop) of the batch axis (axis 1 of (R, B, ...)) this process's devices hold."""
  return host_block(sharding, global_shape[:2])[1]


def host_batches(dataset, batch_size: int, seeds: Sequence[int], start_step: int,
                 num_steps: Optional[int], sharding: jax.sharding.Sharding,
                 leading_shape: Optional[Sequence[int]] = None) -> Iterator:
  """This process's block of every training batch from `dataset` (the trainer's source).

  The block comes from `host_block`: the source is asked for the runs this process holds
  (their seeds) and, when it holds only some rows, for those rows (`rows=(start, stop)`),
  so each process reads and augments only what its devices hold. Middle leading axes (a
  member axis, `leading_shape` (R, M, B)) are sliced after the source produced them.
  """
  seeds = list(seeds)
  leading = tuple(leading_shape or (len(seeds), batch_size))
  box = host_block(sharding, leading)
  (run_lo, run_hi), middle, rows = box[0], box[1:-1], box[-1]
  # One process feeding every row passes no `rows` (a source need not know it); otherwise the
  # rows are always named, also when they are all of them (a TFDS source would else split
  # the batch by process index).
  whole = rows == (0, leading[-1]) and jax.process_count() == 1
  kwargs = {} if whole else {"rows": rows}
  batches = dataset.train_batches(batch_size, seeds[run_lo:run_hi], start_step, num_steps,
                                  **kwargs)
  if all(m == (0, n) for m, n in zip(middle, leading[1:-1])):
    return batches
  index = (slice(None),) + tuple(slice(*m) for m in middle)
  return (jax.tree_util.tree_map(lambda x: x[index], b) for b in batches)


def _global_shape(local_shape, leading, num_leading: int, stacked: int):
  if isinstance(leading, (int, np.integer)):  # Only the batch axis is split (older callers).
    leading = tuple(local_shape[stacked:stacked + num_leading - 1]) + (int(leading),)
  leading = tuple(leading)[:num_leading]
  return tuple(local_shape[:stacked]) + leading + tuple(local_shape[stacked + len(leading):])


def global_batch(local_batch, sharding: jax.sharding.Sharding,
                 leading_shape: Union[int, Sequence[int]], stacked: int = 0):
  """Assembles this process's block of a batch (numpy leaves) into global jax Arrays.

  `leading_shape` holds the global sizes of the axes the sharding splits, after `stacked`
  unsplit axes in front (1 for a stack of steps (K, R, B, ...)); an int is the global batch
  size alone (every run on every process). On one process this is jax.device_put.
  """
  if jax.process_count() == 1:
    return jax.device_put(local_batch, sharding)
  num_leading = len(sharding.spec) - stacked

  def one(x):
    x = np.asarray(x)
    shape = _global_shape(x.shape, leading_shape, num_leading, stacked)
    return jax.make_array_from_process_local_data(sharding, x, shape)
  return jax.tree_util.tree_map(one, local_batch)


def to_host(tree):
  """numpy copies of the jax Arrays in `tree`, gathered from all processes where they span
  several (a collective: every process must call it at the same point)."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
  return jax.tree_util.tree_map(one, tree)


def prefetch_to_device(local_batches: Iterable, sharding: jax.sharding.NamedSharding,
                       leading_shape: Union[int, Sequence[int]], size: int = 2,
                       group_steps: int = 16, group_bytes: int = 4 << 20) -> Iterator:
  """Yields `global_batch` of each host batch, made ready on device ahead by a thread.

  A background thread (`runtime.prefetch.prefetch`) collects consecutive host batches into groups
  of `group_steps` steps (fewer when a batch is large: at most `group_bytes` a group),
  stacks each group, transfers it with one `global_batch` call, splits it into per-step
  arrays laid out as `sharding` with one jitted slicing program, and waits until they are on
  device; the training loop only pops them. One transfer per group instead of one per step
  and array is what keeps a millisecond step fed (benchmarks/input_pipeline.py). The first
  batch and a shorter last group go one step at a time. Up to `size` groups wait in the
  queue. An error of `local_batches` is raised where its batch would have been yielded;
  closing the returned generator stops the thread. `leading_shape`: see `global_batch`.
  Every process must feed the same number of steps (the transfers are collective).
  """
  local_batches = iter(local_batches)
  stacked_sharding = jax.sharding.NamedSharding(
      sharding.mesh, jax.sharding.PartitionSpec(None, *sharding.spec))

  def one_by_one(group):
    return [jax.block_until_ready(global_batch(b, sharding, leading_shape)) for b in group]

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
        on_device = global_batch(stacked, stacked_sharding, leading_shape, stacked=1)
        yield jax.block_until_ready(_unstack(steps, sharding)(on_device))
      else:
        yield one_by_one(group)
      nbytes = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(group[0]))
      steps = max(1, min(group_steps, group_bytes // max(nbytes, 1)))

  return _flatten(prefetch_lib.prefetch(groups(), size))


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
