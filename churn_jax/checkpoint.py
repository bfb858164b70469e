"""Orbax checkpoints of one method's stacked train state, and where a study resumes from.

Resume order (the one place it is written down):
  1. A method whose entry in WORKDIR/results.json has the same fingerprint (its config) is
     finished: its results are reused, nothing is retrained.
  2. Otherwise the latest readable checkpoint in WORKDIR/checkpoints/<method>-<fingerprint>/
     is restored: the whole TrainState (params, batch stats, optimizer state, step, rng). The
     data position is the step itself, since every run's batches are indexed by step.
     An unreadable latest checkpoint is skipped with a warning and the previous one is used.
  3. Otherwise training starts from step 0.
"""

import os
from typing import Any, Optional, Tuple

from absl import logging
import jax
import orbax.checkpoint as ocp


class MethodCheckpointer:
  """Saves every `every_steps` steps and at the end, keeping the last `max_to_keep`."""

  def __init__(self, directory: str, every_steps: int, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.every_steps = int(every_steps)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                             create=True))

  def should_save(self, step: int, num_steps: int) -> bool:
    return step == num_steps or (self.every_steps > 0 and step % self.every_steps == 0)

  def save(self, step: int, state: Any) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def restore_latest(self, target: Any) -> Tuple[Optional[Any], int]:
    """Restores the newest readable checkpoint onto `target`'s shapes and shardings.

    Returns (state, step), or (None, 0) when there is nothing to resume from.
    """
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    steps = sorted(self._manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
      try:
        state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # pylint: disable=broad-except  # Any corruption: try older.
        older = f"falling back to step {steps[i + 1]}" if i + 1 < len(steps) else "starting over"
        logging.warning("checkpoint at step %d in %s is unreadable (%s); %s", step,
                        self.directory, str(e).splitlines()[0][:200], older)
        print(f"warning: checkpoint at step {step} is unreadable; {older}", flush=True)
        continue
      return state, int(step)
    return None, 0

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
