"""Verified orbax checkpoints of one method's stacked train state, and where a study resumes.

Resume order (the one place it is written down):
  1. A method whose entry in WORKDIR/results.json has the same fingerprint (its config and
     data) is finished: its results are reused, nothing is retrained.
  2. Otherwise the newest good checkpoint in WORKDIR/checkpoints/<method>-<fingerprint>/ is
     restored: the whole TrainState (params, batch stats, optimizer state, step, rng). The
     data position is the step itself, since every run's batches are indexed by step.
     A checkpoint is good when it reads, its arrays match the checksum saved with them, and
     every float in it is finite. A bad one is deleted with a warning naming it (so it never
     blocks a later save of the same step) and the previous one is tried.
     Several processes: one resume step for all. Process 0's list of steps is the one tried;
     every process first reads every file of the step (one byte each, no collective), and
     the step is restored only when every process could (an all-gather of the verdicts); the
     checksum verdict is computed on the global arrays, so all processes reach it alike. A
     step any process rejects is rejected, and deleted, by all. (A host alone resuming an
     older step than the others would hang or crash at the next collective; a host failing
     inside orbax's restore, after its files read, would miss orbax's own barrier.)
  3. Otherwise (none, or none good) training starts from step 0, with a warning if some
     checkpoint was rejected.

The checksum: per array, two sums mod 2^32 of its 32-bit words times odd position weights.
Any single flipped bit changes the first sum (an odd weight times 2^k is never 0 mod 2^32),
larger damage escapes both with odds ~2^-64; integer sums are exact in any order, so the
value does not depend on how the arrays are sharded, and it is computed on device (no host
gather, multi-host safe). The checksum is saved as a JSON item beside the state.
"""

import hashlib
import os
from typing import Any, Optional, Tuple

from absl import logging
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from churn_jax.runtime import fileio

_ALGORITHM = "u32-weighted-sums-v1"


def _words(x: jax.Array) -> jax.Array:
  """The array's bits as a flat uint32 vector."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  size = x.dtype.itemsize
  if x.dtype == jnp.bool_ or size == 1:
    return x.astype(jnp.uint32).reshape(-1)
  if size == 2:
    return lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32).reshape(-1)
  return lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)  # 8 bytes: (..., 2) words.


@jax.jit
def _summary(tree) -> Tuple[jax.Array, jax.Array]:
  """(leaves, 2) uint32 sums of every leaf, and whether every float in the tree is finite."""
  sums, finite = [], jnp.array(True)
  for leaf in jax.tree_util.tree_leaves(tree):
    words = _words(leaf)
    i = jnp.arange(words.size, dtype=jnp.uint32)
    odd1 = i * jnp.uint32(2654435761) | jnp.uint32(1)
    odd2 = (i ^ jnp.uint32(0x9E3779B9)) * jnp.uint32(2246822519) | jnp.uint32(1)
    rotated = (words << 13) | (words >> 19)
    sums.append(jnp.stack([jnp.sum(words * odd1, dtype=jnp.uint32),
                           jnp.sum(rotated * odd2, dtype=jnp.uint32)]))
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      finite = finite & jnp.all(jnp.isfinite(leaf))
  return (jnp.stack(sums) if sums else jnp.zeros((0, 2), jnp.uint32)), finite


def checksum(tree) -> Tuple[str, bool]:
  """(hex digest of the tree's array contents, all floats finite)."""
  sums, finite = _summary(tree)
  return hashlib.sha256(np.asarray(sums).tobytes()).hexdigest(), bool(finite)


def _agreed_steps(steps):
  """Process 0's `steps` on every process (a collective where there are several)."""
  if jax.process_count() == 1:
    return list(steps)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  count = int(multihost_utils.broadcast_one_to_all(np.int32(len(steps))))
  if not count:
    return []
  mine = np.zeros(count, np.int64)
  mine[:min(count, len(steps))] = steps[:count]
  return [int(s) for s in multihost_utils.broadcast_one_to_all(mine)]


def _hosts_failing(failed: bool):
  """The process indices whose `failed` is True (a collective where there are several)."""
  if jax.process_count() == 1:
    return [0] if failed else []
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  flags = np.asarray(multihost_utils.process_allgather(np.int32(failed))).reshape(-1)
  return [int(i) for i in np.flatnonzero(flags)]


class MethodCheckpointer:
  """Saves every `every_steps` steps and at the end, keeping the last `max_to_keep`."""

  def __init__(self, directory: str, every_steps: int, max_to_keep: int = 2):
    # A gs:// path goes to orbax as it is (abspath would turn it into a local path).
    directory = os.fspath(directory)
    self.directory = directory if fileio.is_remote(directory) else os.path.abspath(directory)
    self.every_steps = int(every_steps)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                             create=True))

  def should_save(self, step: int, num_steps: int) -> bool:
    return step == num_steps or (self.every_steps > 0 and step % self.every_steps == 0)

  def save(self, step: int, state: Any) -> None:
    digest, _ = checksum(state)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        checksum=ocp.args.JsonSave({"algorithm": _ALGORITHM, "sha256": digest})))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def latest_step(self) -> Optional[int]:
    """The newest saved step (finished saves only), or None."""
    self.wait()
    return self._manager.latest_step()

  def _restore_verified(self, step: int, abstract: Any) -> Any:
    """The state saved at `step`; ValueError when it is unreadable, altered or non-finite."""
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), checksum=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except  # Any corruption reads as unreadable.
      first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
      raise ValueError(f"unreadable ({first})") from None
    saved = restored.checksum or {}
    digest, finite = checksum(restored.state)
    if saved.get("algorithm") != _ALGORITHM or saved.get("sha256") != digest:
      raise ValueError("its arrays do not match the checksum saved with them")
    if not finite:
      raise ValueError("it holds non-finite values")
    return restored.state

  def restore_latest(self, target: Any) -> Tuple[Optional[Any], int]:
    """Restores the newest good checkpoint onto `target`'s shapes and shardings.

    Returns (state, step), or (None, 0) when there is nothing good to resume from. Rejected
    checkpoints are deleted, each with a warning naming it.
    """
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    steps = _agreed_steps(sorted(self._manager.all_steps(), reverse=True))
    for i, step in enumerate(steps):
      error = self._unreadable(step)
      failed = _hosts_failing(error is not None)
      if not failed:
        try:
          state = self._restore_verified(step, abstract)
        except ValueError as e:
          error = str(e)
        failed = _hosts_failing(error is not None)
        if not failed:
          return state, int(step)
      if error is None:
        error = (f"process{'es' if len(failed) > 1 else ''} "
                 f"{', '.join(map(str, failed))} could not read it")
      older = f"falling back to step {steps[i + 1]}" if i + 1 < len(steps) else \
          "no checkpoint left, starting this method afresh"
      message = (f"warning: checkpoint {os.path.join(self.directory, str(step))} is "
                 f"rejected: {error}; deleted, {older}")
      logging.warning("%s", message)
      print(message, flush=True)
      self._delete(step)
    return None, 0

  def _unreadable(self, step: int) -> Optional[str]:
    """None when this process can open every file of `step` and read its first byte."""
    try:
      todo = [fileio.path(self.directory) / str(step)]
      while todo:  # A walk by listing: epath's rglob refuses '**' (many GCS requests).
        for f in todo.pop().iterdir():
          if f.is_dir():
            todo.append(f)
          else:
            with f.open("rb") as handle:
              handle.read(1)
    except Exception as e:  # pylint: disable=broad-except  # Any failure reads as unreadable.
      first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
      return f"a file does not read ({first})"
    return None

  def _delete(self, step: int) -> None:
    try:
      self._manager.delete(step)
    except Exception as e:  # pylint: disable=broad-except  # Deleting is best effort.
      logging.warning("could not delete checkpoint %d in %s: %s", step, self.directory, e)

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
