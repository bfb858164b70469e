"""One study per workdir: an OS-level lock held for the whole study.

The lock is flock(2) on WORKDIR/.lock, taken without blocking. The kernel drops it when the
process exits however it exits (kill -9 included), so a stale lock never needs removing by
hand; the file itself stays and is reused. The holder writes its PID and host into the file,
so a second process can say who holds it. filelock's UnixFileLock truncates the file before
trying the lock, which would erase the holder's name; hence fcntl directly.

Multi-host: only process 0 takes the lock (the others never write results). A gs:// workdir
cannot be flocked: the lock is then taken on a local file named after the bucket path, which
keeps two studies on one machine apart but nothing across machines (docs/TPU.md).
"""

import contextlib
import fcntl
import hashlib
import os
import socket
from typing import Iterator, Optional

from churn_jax.runtime import fileio

LOCK_NAME = ".lock"


_SYSTEM_DIRS = ("/proc", "/sys", "/dev")


def check_workdir(workdir) -> None:
  """Raises ValueError (one line) when `workdir` cannot hold a study; touches nothing."""
  text = "" if workdir is None else os.fspath(workdir)
  if not text.strip():
    raise ValueError("--workdir is empty; name a directory for the results")
  if fileio.is_remote(text):
    missing = fileio.remote_backend_missing(text)
    if missing:
      raise ValueError(f"--workdir={text}: {missing}")
    return
  path = os.path.abspath(text)
  for system in _SYSTEM_DIRS:
    if path == system or path.startswith(system + "/"):
      raise ValueError(f"--workdir={text} is under {system}, a system directory")
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"--workdir={text} is a file, not a directory")
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f"--workdir={text}: {existing} is a file, not a directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f"--workdir={text}: {existing} is not writable")
  if os.statvfs(existing).f_flag & os.ST_RDONLY:
    raise ValueError(f"--workdir={text}: {existing} is on a read-only filesystem")


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir's lock."""


def lock_path(workdir: str) -> str:
  """The local file flocked for `workdir`."""
  if fileio.is_remote(workdir):
    cache = os.environ.get("CHURN_JAX_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "churn_jax")
    key = hashlib.sha256(os.fspath(workdir).rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(cache, "locks", f"{key}.lock")
  return os.path.join(os.path.abspath(workdir), LOCK_NAME)


class WorkdirLock:
  """flock on the workdir's lock file; `acquire` fails at once when another process holds it."""

  def __init__(self, workdir: str):
    self.workdir = os.fspath(workdir)
    self.path = lock_path(self.workdir)
    self._fd: Optional[int] = None

  def acquire(self) -> None:
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    # No O_TRUNC: the holder's PID and host must survive a contender's open.
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
      os.close(fd)
      raise WorkdirBusyError(
          f"workdir {self.workdir} is in use by another study ({holder}); wait for it to "
          f"finish or use another --workdir") from None
    except BaseException:
      os.close(fd)
      raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    self._fd = fd

  def release(self) -> None:
    if self._fd is not None:
      # The holder line is left: it is only read while the lock is held, and truncating here
      # could race with the next holder's write.
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[Optional[WorkdirLock]]:
  """Holds the workdir's lock for the `with` body (process 0 only on a multi-host slice)."""
  import jax  # pylint: disable=g-import-not-at-top  # check_workdir runs before jax loads.
  if jax.process_index() != 0:
    yield None
    return
  with WorkdirLock(workdir) as lock:
    yield lock
