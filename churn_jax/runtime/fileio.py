"""Files of a workdir, local or on a bucket: atomic writes, reads, hashes.

Every path goes through etils.epath, so the same code writes to a local disk and to gs://
(through gcsfs or tf.io.gfile, whichever is installed). Writes are atomic where the store
allows it:
- local: a temporary file in the same directory, fsync, then os.replace; a crash leaves the
  old file or the new one, never half of one. The final mode is what a plain open() gives
  (0666 less the umask), not mkstemp's 0600, so a group sharing the runs can read them.
- object stores (gs://): one upload; an object becomes visible only when it is complete.
"""

import hashlib
import importlib.util
import os
import tempfile
import threading
from typing import Optional, Union

from etils import epath

_CHUNK = 1 << 20
_umask_lock = threading.Lock()
_umask: Optional[int] = None


def is_remote(path) -> bool:
  """True for a path with a URL scheme (gs://, s3://, ...), False for a local path."""
  return "://" in os.fspath(path)


def remote_backend_missing(path) -> Optional[str]:
  """None when `path` can be written by the installed libraries, else what to install."""
  text = os.fspath(path)
  if not is_remote(text):
    return None
  scheme = text.split("://", 1)[0]
  if scheme == "gs":
    if importlib.util.find_spec("gcsfs") or importlib.util.find_spec("tensorflow"):
      return None
    return "writing to gs:// needs gcsfs (pip install gcsfs) or tensorflow"
  if scheme == "s3":
    return None if importlib.util.find_spec("s3fs") else "writing to s3:// needs s3fs"
  return f"unsupported filesystem {scheme}://; use a local path or gs://"


def umask() -> int:
  """The process umask, read once: from /proc (no side effect), else by setting it back."""
  global _umask
  with _umask_lock:
    if _umask is None:
      try:
        with open("/proc/self/status") as f:
          _umask = next(int(l.split()[1], 8) for l in f if l.startswith("Umask:"))
      except (OSError, StopIteration, ValueError, IndexError):
        _umask = os.umask(0o022)  # Briefly changes it for other threads: the fallback only.
        os.umask(_umask)
    return _umask


def path(p) -> epath.Path:
  return epath.Path(p)


def exists(p) -> bool:
  return epath.Path(p).exists()


def makedirs(p) -> None:
  epath.Path(p).mkdir(parents=True, exist_ok=True)


def read_bytes(p) -> bytes:
  return epath.Path(p).read_bytes()


def read_text(p) -> str:
  return epath.Path(p).read_text()


def sha256(p) -> str:
  """Hex sha256 of a file's bytes, read in 1 MiB chunks (a large npz never sits in memory)."""
  digest = hashlib.sha256()
  with epath.Path(p).open("rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()


def atomic_write(p, data: Union[str, bytes]) -> None:
  """Writes `data` (text is UTF-8 encoded) to `p`, atomically where the store allows."""
  payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
  if is_remote(p):
    target = epath.Path(p)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)  # An object store publishes an object only once complete.
    return
  target = os.path.abspath(os.fspath(p))
  directory = os.path.dirname(target)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(target))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
      f.flush()
      os.fchmod(f.fileno(), 0o666 & ~umask())  # What open(path, "w") would have given.
      os.fsync(f.fileno())
    os.replace(tmp, target)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
