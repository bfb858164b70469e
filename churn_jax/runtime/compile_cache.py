"""The persistent compilation cache: compiled programs reused across processes.

A ResNet step takes 10-75 s to compile on CPU (docs/PERFORMANCE.md); JAX's persistent cache
stores each compiled executable on disk and a later process loads it instead of compiling.
The loaded executable is the one compiled before, so results are bitwise those of a fresh
compile (tests/runtime/compile_cache_test.py).

`config.compile_cache_dir`: "auto" (the user's cache directory), a path (local or gs://), or
"" (off). Several processes (a multi-host slice): JAX writes entries from process 0 only, so
a cache in each host's home directory would fill on host 0 alone and every other host would
compile every program on every run. There "auto" is WORKDIR/compile_cache, which every host
sees (a multi-host workdir must be shared or gs://); an explicit path must be shared too.
Whether the other hosts then load process 0's entries depends on the platform: JAX's key
hashes the device topology as each process sees it. Two CPU processes see different ones, so
process 1 never loads an entry (measured on tests/runtime/multihost_test.py's relaunches:
process 0 loaded 58 of 60 programs, process 1 none of 51); on a TPU slice, where every host
sees the one slice topology, the keys should agree, but that is untested here.
churn_jax adds two things to JAX's cache:
- One subdirectory per machine type. XLA:CPU compiles for the host's instruction set (AVX2 or
  AVX-512); JAX's key hashes the device kind ("cpu"), the jaxlib version and the program, and
  we could not find the CPU's features in it, so a cache shared between machines (a home
  directory on NFS) could hand one CPU code compiled for another.
- A check of entries before use. JAX writes an entry in place and never replaces an existing
  one, so a process killed mid-write leaves a truncated entry that every later run would fail
  to read (and recompile, with a warning). `repair` removes entries that do not decompress
  and records the ones that did, so each entry is read once.
"""

import hashlib
import json
import os
import platform
from typing import Dict, List, Optional

from absl import logging
import jax
import jaxlib
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from churn_jax.runtime import fileio

AUTO = "auto"
_MANIFEST = "churn_jax_verified.json"
_SUFFIX = "-cache"  # JAX's LRU cache names an entry KEY-cache (jax/_src/lru_cache.py).
_CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name", "flags")


def _cpuinfo() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return f.read()
  except OSError:
    return platform.processor()


def machine_tag(cpuinfo: Optional[str] = None) -> str:
  """'ARCH-HASH': the architecture and a hash of the CPU's identity and instruction sets."""
  text = _cpuinfo() if cpuinfo is None else cpuinfo
  fields = {}
  for line in text.splitlines():  # The first core's lines; every core reports the same.
    key, sep, value = line.partition(":")
    key = key.strip()
    if sep and key in _CPU_FIELDS and key not in fields:
      fields[key] = value.strip()
  identity = {"cpu": fields or text.strip(), "jaxlib": jaxlib.__version__,
              "machine": platform.machine()}
  digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
  return f"{platform.machine() or 'unknown'}-{digest}"


def default_root() -> str:
  """$XDG_CACHE_HOME/churn_jax/xla, else ~/.cache/churn_jax/xla."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "churn_jax", "xla")


def directory(setting: str, cpuinfo: Optional[str] = None, workdir: Optional[str] = None,
              process_count: int = 1) -> Optional[str]:
  """The cache directory for `config.compile_cache_dir`, or None when it is off."""
  if not isinstance(setting, str):
    raise ValueError(f"compile_cache_dir must be a string ('auto', a path or ''), "
                     f"got {setting!r}")
  if not setting:
    return None
  if setting != AUTO:
    root = setting
  elif process_count > 1 and workdir:  # One cache all hosts read (see the module doc).
    root = os.path.join(os.fspath(workdir).rstrip("/"), "compile_cache")
  else:
    root = default_root()
  return os.path.join(root.rstrip("/"), machine_tag(cpuinfo))


def _decodes(data: bytes) -> bool:
  # The decoder JAX itself reads entries with (zlib or zstd, whichever it picked): zlib checks
  # an Adler-32 of the content, and both refuse a truncated stream.
  from jax._src import compilation_cache as jax_cache_impl  # pylint: disable=g-import-not-at-top
  try:
    jax_cache_impl.decompress_executable(data)
  except Exception:  # pylint: disable=broad-except  # Any decoder error: the entry is bad.
    return False
  return True


def _stamp(entry) -> List[int]:
  """[size, modification time]: ns locally, the store's resolution (s) on gs://."""
  if not fileio.is_remote(entry):
    stat = os.stat(entry)
    return [stat.st_size, stat.st_mtime_ns]
  stat = entry.stat()
  return [int(stat.length), int(stat.mtime)]


def repair(path: str) -> List[str]:
  """Removes the entries of the cache at `path` that do not decode; returns their names.

  Entries checked before and unchanged since (size and modification time, recorded in
  churn_jax_verified.json) are not read again. An entry another process is writing right now
  may be removed too; it is then compiled again, which costs time, never correctness.
  """
  root = fileio.path(path)
  manifest_path = root / _MANIFEST
  try:
    verified: Dict[str, List[int]] = json.loads(fileio.read_text(manifest_path))
  except (OSError, ValueError):
    verified = {}
  removed, kept = [], {}
  for entry in sorted(root.glob(f"*{_SUFFIX}")):
    name = entry.name
    stamp = _stamp(entry)
    if verified.get(name) == stamp:
      kept[name] = stamp
      continue
    if _decodes(fileio.read_bytes(entry)):
      kept[name] = stamp
      continue
    try:
      entry.unlink()
    except FileNotFoundError:
      pass
    removed.append(name)
  if kept != verified:
    fileio.atomic_write(manifest_path, json.dumps(kept, sort_keys=True, indent=0))
  for name in removed:
    logging.warning("compile cache: removed unreadable entry %s (it will be compiled again)",
                    name)
  return removed


def configure(setting: str, workdir: Optional[str] = None) -> Optional[str]:
  """Points JAX's persistent cache at `directory(setting)`; returns it, or None when off.

  Called before the study's first compilation. A directory that cannot be created or written
  turns the cache off with one warning: the study runs, it only compiles.
  """
  path = directory(setting, workdir=workdir, process_count=jax.process_count())
  if path is not None:
    try:
      fileio.makedirs(path)
      if not fileio.is_remote(path) and not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{path} is not writable")
      if jax.process_index() == 0:  # Only process 0 writes entries (jax/_src/compiler.py).
        repair(path)
    except OSError as e:
      logging.warning("compile cache off: cannot use %s (%s)", path, e)
      path = None
  if jax.config.jax_compilation_cache_dir != path:
    jax.config.update("jax_compilation_cache_dir", path)
    # JAX decides once per process whether the cache is used: reset it so a process that
    # compiled before (a test, a notebook) picks up the new directory.
    jax_cache.reset_cache()
  if path is not None:
    logging.info("compile cache: %s", path)
  return path
