"""Per-run mini-batch order for R replicate runs trained side by side.

The order is a pure function of (run seed, epoch, step), so a run resumed from
a checkpoint at step k sees exactly the batches it would have seen without
the interruption; no iterator state needs to be saved.
"""

import threading
from typing import Iterator, Optional, Sequence

import numpy as np


class RunBatches:
  """Mini-batches for R runs, indexable by global step.

  Run r's example order in epoch e is
  `np.random.default_rng([seeds[r], e]).permutation(N)`; an epoch has
  `N // batch_size` steps and drops the remainder. Runs given equal seeds
  see identical batches (for configs that fix the data order across runs).
  """

  def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int,
               seeds: Sequence[int]):
    self.x = np.asarray(x)
    self.y = np.asarray(y)
    n = len(self.x)
    if len(self.y) != n:
      raise ValueError(f"x has {n} examples but y has {len(self.y)}")
    batch_size = int(batch_size)
    if not 1 <= batch_size <= n:
      raise ValueError(
          f"batch_size must be in [1, {n}] (the number of examples), "
          f"got {batch_size}")
    self.seeds = tuple(int(s) for s in seeds)
    if not self.seeds:
      raise ValueError("seeds must have one entry per run; got none")
    if min(self.seeds) < 0:
      raise ValueError(f"seeds must be non-negative, got {self.seeds}")
    self.batch_size = batch_size
    self.num_examples = n
    self.steps_per_epoch = n // batch_size
    # The permutations of the epoch last asked for; steps are usually
    # requested in order, so one epoch of cache avoids recomputing them.
    self._lock = threading.Lock()
    self._cached_epoch: Optional[int] = None
    self._cached_perms: Optional[np.ndarray] = None

  @property
  def num_runs(self) -> int:
    return len(self.seeds)

  def permutations(self, epoch: int) -> np.ndarray:
    """The (R, N) example order of every run in `epoch`."""
    epoch = int(epoch)
    if epoch < 0:
      raise ValueError(f"epoch must be non-negative, got {epoch}")
    with self._lock:
      if self._cached_epoch != epoch:
        # Runs sharing a seed share one permutation.
        by_seed = {
            s: np.random.default_rng([s, epoch]).permutation(
                self.num_examples)
            for s in dict.fromkeys(self.seeds)
        }
        perms = np.stack([by_seed[s] for s in self.seeds])
        perms.setflags(write=False)  # Shared by every caller.
        self._cached_perms = perms
        self._cached_epoch = epoch
      return self._cached_perms

  def indices(self, step: int) -> np.ndarray:
    """The (R, B) example indices of global step `step`."""
    step = int(step)
    if step < 0:
      raise ValueError(f"step must be non-negative, got {step}")
    epoch, within = divmod(step, self.steps_per_epoch)
    start = within * self.batch_size
    return self.permutations(epoch)[:, start:start + self.batch_size]

  def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(x[R, B, ...], y[R, B]) for global step `step`."""
    idx = self.indices(step)
    return self.x[idx], self.y[idx]

  def iterate(self, start_step: int = 0, num_steps: Optional[int] = None
              ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields batch(start_step), batch(start_step + 1), ...

    Stops after `num_steps` batches, or never when num_steps is None.
    """
    step = int(start_step)
    end = None if num_steps is None else step + int(num_steps)
    while end is None or step < end:
      yield self.batch(step)
      step += 1
