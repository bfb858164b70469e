"""SIGTERM / SIGINT as a request to stop at a step boundary with a checkpoint.

A Cloud TPU or spot VM sends SIGTERM before it is preempted; Ctrl-C sends SIGINT. While a
study runs (`watch()`), either signal only sets a flag; the training loop polls it once per
step (`current().should_stop(step)`), saves a checkpoint of the finished step and raises
`Stopped`, which the command line turns into one line and exit code 143 (SIGTERM) or 130
(SIGINT). A second SIGINT stops at once (KeyboardInterrupt) for a user who means it.

Multi-host: every process must stop at the same step (a checkpoint is a collective), so with
several processes the flag is only read at steps that are multiples of `sync_every`, where
the processes all-gather their flags and stop together if any was signalled.
"""

import contextlib
import signal
import threading
from typing import Iterator, Optional

import numpy as np

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}


class Stopped(Exception):
  """Training stopped on a signal after saving (or having) a checkpoint of `step`."""

  def __init__(self, method: str, step: int, signum: int, saved: bool):
    self.method, self.step, self.signum, self.saved = method, int(step), int(signum), saved
    what = "checkpoint saved" if saved else "no checkpoint (nothing trained yet)"
    super().__init__(f"stopped at step {step} of {method}, {what}; run the same command to "
                     f"resume")

  @property
  def exit_code(self) -> int:
    return EXIT_CODES.get(self.signum, 128 + self.signum)


class Watcher:
  """Records the first SIGTERM/SIGINT; `should_stop` answers the same on every process."""

  def __init__(self):
    self.signum: Optional[int] = None

  def _handle(self, signum, frame):
    del frame
    if self.signum == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt  # Second Ctrl-C: the user does not want to wait.
    if self.signum is None:
      self.signum = signum

  def should_stop(self, step: int, sync_every: int = 1) -> bool:
    import jax  # pylint: disable=g-import-not-at-top  # This module loads before jax.
    if jax.process_count() == 1:
      return self.signum is not None
    if step % max(1, int(sync_every)):
      return False
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    mine = np.int32(self.signum or 0)
    flags = np.asarray(multihost_utils.process_allgather(mine))
    if self.signum is None and flags.any():
      self.signum = int(flags[flags > 0][0])  # Report the signal another host received.
    return bool(flags.any())


class _Never(Watcher):
  """Outside `watch()`: nothing stops training (library calls, tests)."""

  def should_stop(self, step: int, sync_every: int = 1) -> bool:
    return False


_NEVER = _Never()
_current: Watcher = _NEVER


def current() -> Watcher:
  """The watcher of the running study, or one that never stops."""
  return _current


@contextlib.contextmanager
def watch() -> Iterator[Watcher]:
  """Installs the SIGTERM/SIGINT handlers for the `with` body (main thread only)."""
  global _current
  watcher = Watcher()
  if threading.current_thread() is not threading.main_thread():
    yield _NEVER  # Signal handlers can only be installed from the main thread.
    return
  previous = {s: signal.signal(s, watcher._handle) for s in EXIT_CODES}  # pylint: disable=protected-access
  outer, _current = _current, watcher
  try:
    yield watcher
  finally:
    _current = outer
    for s, handler in previous.items():
      signal.signal(s, handler)
