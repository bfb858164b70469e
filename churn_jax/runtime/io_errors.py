"""Disk full, quota and I/O errors, wherever they surface, as one line naming path and errno.

A full disk reaches the study in many shapes: an OSError from our own writes or from
TensorBoard's flush, and from orbax a ValueError whose text carries TensorStore's
'No space left on device [os_error_code='28']', often as the __context__ of a later error
raised while cleaning up. `describe` walks the whole exception chain and finds the cause.
"""

import errno
import os
import re
from typing import Iterator, Optional

# The errnos that mean "the storage refused", not "the program is wrong".
ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)
_TEXT = {os.strerror(code): code for code in ERRNOS}
_TEXT_RE = re.compile("|".join(re.escape(t) for t in _TEXT))
_CODE_RE = re.compile(r"os_error_code='?(\d+)")
_PATH_RE = re.compile(r"\"(/[^\"]+)\"|'(/[^']+)'")


def _chain(e: BaseException) -> Iterator[BaseException]:
  """e, its causes and contexts, and the members of exception groups, each once."""
  seen, todo = set(), [e]
  while todo:
    exc = todo.pop(0)
    if exc is None or id(exc) in seen:
      continue
    seen.add(id(exc))
    yield exc
    todo += [exc.__cause__, exc.__context__] + list(getattr(exc, "exceptions", ()))


def matches(text: str) -> bool:
  """Whether a message (a log record's, say) reports one of ERRNOS."""
  return bool(_TEXT_RE.search(text))


def describe(e: BaseException, where: str = "") -> Optional[str]:
  """One line for a storage error anywhere in `e`'s chain, or None if there is none.

  `where` (the workdir) is named when the error carries no path.
  """
  found = None
  for exc in _chain(e):
    if isinstance(exc, OSError) and exc.errno in ERRNOS:
      path = exc.filename or exc.filename2
      found = (exc.errno, os.fspath(path) if path else None)
      if path:
        break
  if found is None or found[1] is None:
    for exc in _chain(e):  # The first message that names a path, else the first at all.
      text = str(exc)
      match = _TEXT_RE.search(text)
      if match:
        code = _CODE_RE.search(text)
        paths = [a or b for a, b in _PATH_RE.findall(text)]
        if found is None or paths:
          found = (found[0] if found else int(code.group(1)) if code else
                   _TEXT[match.group(0)], paths[0] if paths else None)
        if paths:
          break
  if found is None:
    return None
  code, path = found
  place = path or (f"under {where}" if where else "(no path given)")
  return (f"{os.strerror(code)} (errno {code}, {errno.errorcode.get(code, '?')}) writing "
          f"{place}; free space (or raise the quota) and run the same command again: "
          f"finished methods and saved checkpoints are kept")
