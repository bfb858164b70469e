"""The study's results in its workdir: which methods are finished, and their files.

Each method's entry carries a fingerprint of everything that determines its numbers: the
config less the bookkeeping keys, the method's own entry, and the content of the data (the
npz's sha256, TFDS name:version:split, the generator's parameters and a hash of its output).
A rerun reuses entries whose fingerprint matches and refuses to mix in results of a different
config or different data, naming the keys that differ. results.json also records the data
source actually used and the software and devices that produced the numbers.
"""

import hashlib
import json
import os
import platform
from typing import Any, Dict, List, Optional, Sequence

import jax

from churn_jax.outputs import predictions, results_files
from churn_jax.runtime import fileio
from churn_jax.study import evaluate

# Keys that change how a study is run or shown, never its numbers.
_BOOKKEEPING = ("methods", "method_configs", "progress", "log_every_steps",
                "checkpoint_every_steps", "checkpoints_to_keep", "eval_every_steps",
                "compile_cache_dir", "steps_per_loop", "profile_steps",  # bitwise-neutral knobs
                "plots")
# Bookkeeping left out of results.json too, so its bytes do not depend on it.
_UNRECORDED = ("plots",)
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def _payload(config_dict: Dict[str, Any], name: str, data: Optional[Dict[str, Any]]):
  common = {k: v for k, v in config_dict.items() if k not in _BOOKKEEPING}
  payload = {"config": common, "method": config_dict["method_configs"][name], "name": name}
  if data is not None:
    payload["data"] = data
  return json.loads(json.dumps(payload, sort_keys=True, default=str))  # Tuples -> lists.


def fingerprint(config, name: str, data: Optional[Dict[str, Any]] = None) -> str:
  """16 hex digits of sha256 over `name`'s config and the data's provenance (`data`)."""
  config_dict = config if isinstance(config, dict) else config.to_dict()
  text = json.dumps(_payload(config_dict, name, data), sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(value, prefix: str = "") -> Dict[str, Any]:
  if isinstance(value, dict):
    out = {}
    for key, sub in value.items():
      out.update(_flatten(sub, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: value}


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
  """'key: old != new' for short values, 'key differs' for long ones (hashes, paths)."""
  old, new = _flatten(old), _flatten(new)
  out = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
    if a != b:
      short = len(repr(a)) <= 24 and len(repr(b)) <= 24
      out.append(f"{key}: {a} != {b}" if short else f"{key} differs")
  return out


def describe_difference(old_results: Dict[str, Any], config, name: str,
                        data: Optional[Dict[str, Any]]) -> str:
  """Why `name`'s stored entry does not match: the keys that differ, '; '-separated."""
  old_config = old_results.get("config") or {}
  if name not in old_config.get("method_configs", {}):
    return "the stored config is not recorded"
  old = _payload(old_config, name, old_results.get("data"))
  new = _payload(config.to_dict(), name, data)
  diffs = _differences({**old["config"], "method_configs": {name: old["method"]}},
                       {**new["config"], "method_configs": {name: new["method"]}})
  if "data" in old or "data" in new:
    diffs += [d for d in _differences({"data": old.get("data", "(not recorded)")},
                                      {"data": new.get("data")}) if d not in diffs]
  return "; ".join(diffs) or "the fingerprint's definition changed (an older churn_jax)"


def _max_difference(a, b) -> float:
  """Largest absolute difference between two summaries ({mean, std, values})."""
  if not isinstance(b, dict) or len(a.get("values", [])) != len(b.get("values") or []):
    return float("inf")
  worst = 0.0
  for x, y in zip([a["mean"], a["std"]] + list(a["values"]),
                  [b.get("mean"), b.get("std")] + list(b["values"])):
    if (x is None) != (y is None):
      return float("inf")
    if x is not None:
      try:
        worst = max(worst, abs(float(x) - float(y)))
      except (TypeError, ValueError):
        return float("inf")
  return worst


def rederive(workdir: str, name: str, entry: Dict[str, Any], schurn_alpha: float,
             tolerance: float = 1e-6):
  """`name`'s metrics recomputed from its predictions (sha256 checked against `entry`).

  Returns (summary, mismatches): mismatches are 'name.field (stored X, predictions give Y)'
  for every metric of `entry` its predictions do not reproduce within `tolerance`. results.json
  is derived data: a hand edit or a torn write shows here, never in a table.
  """
  path = predictions.check(workdir, name, entry.get("predictions"))
  pred = predictions.load(path)
  summary = evaluate.summarize(pred["deployed"], pred["labels"], schurn_alpha)
  mismatches = []
  for key, value in summary.items():
    if not isinstance(value, dict):
      continue
    if _max_difference(value, entry.get(key)) > tolerance:
      old = entry.get(key)
      stored = old.get("mean") if isinstance(old, dict) else old
      mismatches.append(f"{name}.{key} (stored mean {stored!r}, its predictions give "
                        f"{value['mean']!r})")
  return summary, mismatches


def environment() -> Dict[str, Any]:
  """Software and devices that produced the numbers (bitwise reproducibility holds per these)."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  versions = {}
  for package in _PACKAGES:
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = None
  devices = jax.devices()
  return {"versions": versions, "python": platform.python_version(),
          "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
          "device_count": len(devices), "process_count": jax.process_count(),
          "host_cpu": _cpu_model()}


def _cpu_model() -> str:
  """The CPU model: float results differ in the low bits between CPU types (AVX2/AVX-512)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


class ResultsStore:
  """Reads WORKDIR/results.json, checks it against the config and data, and rewrites it.

  The constructor refuses a foreign workdir without writing anything; `begin` (under the
  workdir lock) reads the file again, so a study that finished meanwhile is seen, and writes
  the resolved config to WORKDIR/config.json.
  """

  def __init__(self, workdir: str, config, names: Sequence[str],
               data: Optional[Dict[str, Any]] = None):
    self.workdir = os.fspath(workdir)
    self._path = os.path.join(self.workdir, "results.json")
    self._config = config
    self._names = list(names)
    self._data = data
    self._fingerprints = {name: fingerprint(config, name, data) for name in names}
    self.results = self._load_and_check()

  def _load_and_check(self) -> Dict[str, Any]:
    results = self._load()
    for name in self._names:
      old = results["methods"].get(name)
      if old is not None and old.get("fingerprint") != self._fingerprints[name]:
        why = describe_difference(results, self._config, name, self._data)
        raise ValueError(f"{self._path} already holds results for method {name!r} from a "
                         f"different config or data ({why}); use a new --workdir (nothing "
                         f"was changed)")
    results["config"] = {k: v for k, v in self._config.to_dict().items()
                         if k not in _UNRECORDED}
    if self._data is not None:
      results["data"] = self._data
    return results

  def begin(self) -> None:
    """Re-reads results.json under the workdir lock, re-derives every finished method that
    will be reused from its predictions, and writes WORKDIR/config.json."""
    self.results = self._load_and_check()
    self.check_reused()
    if jax.process_index() == 0:
      text = json.dumps(self._config.to_dict(), indent=1, sort_keys=True, default=str)
      results_files.atomic_write(os.path.join(self.workdir, "config.json"), text + "\n")

  def check_reused(self) -> None:
    """Refuses (ValueError, one line) a finished entry its predictions do not reproduce."""
    alpha = float(self._config.get("schurn_alpha", 1.0))
    entries = self.results["methods"]
    points = [n for n, e in entries.items()  # A stacked sweep's points of these methods.
              if isinstance(e.get("sweep"), dict) and e["sweep"].get("method") in self._names]
    for name in self._names + points:
      entry = entries.get(name)
      if entry is None:
        continue
      _, mismatches = rederive(self.workdir, name, entry, alpha)
      if mismatches:
        raise ValueError(f"{self._path}: {mismatches[0]}; results.json is derived from the "
                         f"predictions: run `churn-jax report {self.workdir} --repair` to "
                         f"rewrite it from them (nothing was changed)")

  def _load(self) -> Dict[str, Any]:
    if not fileio.exists(self._path):
      return {"config": {}, "methods": {}}
    try:
      results = json.loads(fileio.read_text(self._path))
      assert isinstance(results.get("methods"), dict)
      return results
    except (ValueError, AssertionError, AttributeError) as e:
      raise ValueError(f"{self._path} is unreadable ({type(e).__name__}); move it away or use a "
                       f"new --workdir (nothing was changed)") from None

  def is_finished(self, name: str) -> bool:
    return name in self.results["methods"]

  def checkpoint_dir(self, name: str) -> str:
    return os.path.join(self.workdir, "checkpoints", f"{name}-{self._fingerprints[name]}")

  def add(self, name: str, entry: Dict[str, Any], train_seconds: float,
          input_seconds: float = 0.0, throughput: Optional[Dict[str, float]] = None) -> None:
    self.results["methods"][name] = dict(entry, fingerprint=self._fingerprints[name])
    # The process that produced the numbers (a resumed study records its last process).
    self.results["environment"] = environment()
    if jax.process_index() != 0:  # On a multi-host slice one host writes the files.
      return
    results_files.write_results(self.workdir, self.results)
    # Wall-clock times live apart from results.json, which stays bitwise reproducible.
    timings_path = os.path.join(self.workdir, "timings.json")
    timings = {}
    if fileio.exists(timings_path):
      try:
        timings = json.loads(fileio.read_text(timings_path))
      except ValueError:
        timings = {}
    timings[name] = {"train_seconds": train_seconds, "input_wait_seconds": input_seconds,
                     "input_wait_fraction": input_seconds / max(train_seconds, 1e-9),
                     **(throughput or {})}  # examples/s, FLOP/s, MFU (engine/throughput.py)
    results_files.atomic_write(timings_path, json.dumps(timings, indent=1) + "\n")
