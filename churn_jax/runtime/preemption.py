"""SIGTERM / SIGINT as a request to stop at a step boundary with a checkpoint.

A Cloud TPU or spot VM sends SIGTERM before it is preempted; Ctrl-C sends SIGINT. While a
study runs (`watch()`), either signal only sets a flag; the training loop polls it once per
step (`current().should_stop(step)`), saves a checkpoint of the finished step and raises
`Stopped`, which the command line turns into one line and exit code 143 (SIGTERM) or 130
(SIGINT). A second SIGINT stops at once (KeyboardInterrupt) for a user who means it.

Multi-host: every process must stop at the same step (a checkpoint is a collective), and a
spot VM's ~30 s notice or SLURM's KillWait leaves no time to wait for a logging step. So every
step each process contributes its flag to a tiny asynchronous all-reduce (one int per device,
dispatched like the training step, no host sync), and reads the result of the all-reduce it
dispatched one step earlier. Every process reads the same value for the same step, so all stop
together, one step after any of them was signalled; the step itself never waits for the host
(the read is of a result that is already, or nearly, done).
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
    self._agree: Optional["_Agreement"] = None

  def _handle(self, signum, frame):
    del frame
    if self.signum == signal.SIGINT and signum == signal.SIGINT:
      _silence_for_exit()
      raise KeyboardInterrupt  # Second Ctrl-C: the user does not want to wait.
    if self.signum is None:
      self.signum = signum

  def should_stop(self, step: int, sync_every: int = 1) -> bool:
    """Whether to stop after the finished `step`; the same answer on every process.

    With several processes this is a collective: every process calls it once per step, in
    the same order. `sync_every` is kept for callers; agreement happens every step.
    """
    del step, sync_every
    import jax  # pylint: disable=g-import-not-at-top  # This module loads before jax.
    if jax.process_count() == 1:
      return self.signum is not None
    if self._agree is None:
      self._agree = _Agreement()
    signum = self._agree.step(self.signum or 0)
    if self.signum is None and signum:
      self.signum = signum  # Report the signal another host received.
    return bool(signum)


class _Agreement:
  """A per-step max of every process's signal number, read one step late (see module doc)."""

  def __init__(self):
    import jax  # pylint: disable=g-import-not-at-top
    from jax import sharding  # pylint: disable=g-import-not-at-top
    # Grouped by process: each process's flags fill one contiguous block of the array.
    devices = np.array(sorted(jax.devices(), key=lambda d: (d.process_index, d.id)))
    mesh = sharding.Mesh(devices, ("all",))
    self._sharding = sharding.NamedSharding(mesh, sharding.PartitionSpec("all"))
    self._local = len(jax.local_devices())
    self._shape = (devices.size,)
    replicated = sharding.NamedSharding(mesh, sharding.PartitionSpec())
    self._max = jax.jit(lambda x: x.max(), out_shardings=replicated)
    self._pending = None

  def step(self, mine: int) -> int:
    """Dispatches this step's all-reduce of `mine`; returns the previous step's result."""
    import jax  # pylint: disable=g-import-not-at-top
    flags = jax.make_array_from_process_local_data(
        self._sharding, np.full(self._local, mine, np.int32), self._shape)
    previous, self._pending = self._pending, self._max(flags)
    if previous is None:
      return 0
    return int(np.asarray(previous.addressable_shards[0].data))


class _Never(Watcher):
  """Outside `watch()`: nothing stops training (library calls, tests)."""

  def should_stop(self, step: int, sync_every: int = 1) -> bool:
    return False


def _silence_for_exit() -> None:
  """The process is about to end on a second Ctrl-C: the interrupt unwinds through orbax's
  save threads and loggers, whose tracebacks would bury the command line's one clean line."""
  import logging  # pylint: disable=g-import-not-at-top
  logging.disable(logging.CRITICAL)
  threading.excepthook = lambda args: None


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
