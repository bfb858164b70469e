"""A venv holding exactly the closure of some requirements, linked from the test venv.

The closure is resolved from the installed distributions' metadata (their Requires-Dist with
markers and extras evaluated for this interpreter), so it is the set pip would install for
those requirements at the versions pinned here; each distribution's files (its RECORD) are
linked into the new venv's site-packages, churn_jax's from this repository. Offline and a few
seconds, where pip installing the same set took minutes.
"""

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from typing import Iterable, List, Set, Tuple

from packaging.requirements import Requirement

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _key(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: Iterable[str], skip: Set[str] = frozenset()) -> Set[str]:
  """Normalised names of every distribution the requirements pull in (installed ones)."""
  todo: List[Tuple[str, Set[str]]] = []
  for text in requirements:
    req = Requirement(text)
    todo.append((req.name, set(req.extras)))
  seen: dict = {}
  while todo:
    name, extras = todo.pop()
    key = _key(name)
    if key in skip or (key in seen and extras <= seen[key]):
      continue
    seen[key] = seen.get(key, set()) | extras
    dist = md.distribution(name)  # PackageNotFoundError: a requirement this venv lacks.
    for text in dist.requires or []:
      req = Requirement(text)
      env_extras = [""] + sorted(seen[key])
      if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in env_extras):
        todo.append((req.name, set(req.extras)))
  return set(seen)


def build(directory: str, requirements: Iterable[str], skip: Set[str] = frozenset()):
  """Creates DIRECTORY/venv with exactly the closure; returns (python, distribution names)."""
  names = closure(requirements, {_key(s) for s in skip})
  venv = os.path.join(directory, "venv")
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
  python = os.path.join(venv, "bin", "python")
  purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                            "['purelib'])"], check=True, capture_output=True, text=True
                           ).stdout.strip()
  here = sysconfig.get_paths()["purelib"]
  for name in sorted(names):
    if name == "churn-jax":  # The project itself: its package as an install would place it.
      shutil.copytree(os.path.join(_ROOT, "churn_jax"), os.path.join(purelib, "churn_jax"),
                      ignore=shutil.ignore_patterns("__pycache__"))
      continue
    dist = md.distribution(name)
    for f in dist.files or []:
      src = os.path.normpath(os.path.join(here, str(f)))
      # Scripts in bin/ are not needed to import. Byte code is linked with its source: without
      # it every import in the new venv compiles its module from source again (the fresh-venv
      # study cost 18.7 CPU-s against ~8 for the same study here); a .pyc stays valid beside a
      # link because Python checks the source's mtime and size through the link.
      if not src.startswith(here + os.sep) or not os.path.isfile(src):
        continue
      dst = os.path.join(purelib, os.path.relpath(src, here))
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      if not os.path.exists(dst):
        os.symlink(src, dst)
  return python, names
