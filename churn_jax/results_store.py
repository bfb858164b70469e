"""The study's results in its workdir: which methods are finished, and their files.

Each method's entry carries a fingerprint of everything that determines its numbers (the
config less the bookkeeping keys, plus the method's own entry). A rerun reuses entries whose
fingerprint matches and refuses to mix in results of a different config.
"""

import hashlib
import json
import os
from typing import Any, Dict, Sequence

import jax

from churn_jax import report

# Keys that change how a study is run or shown, never its numbers.
_BOOKKEEPING = ("methods", "method_configs", "progress", "log_every_steps",
                "checkpoint_every_steps", "checkpoints_to_keep", "eval_every_steps")


def fingerprint(config, name: str) -> str:
  common = {k: v for k, v in config.to_dict().items() if k not in _BOOKKEEPING}
  payload = {"config": common, "method": config.method_configs[name].to_dict(), "name": name}
  text = json.dumps(payload, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResultsStore:
  """Reads WORKDIR/results.json once, checks it against the config, and rewrites it."""

  def __init__(self, workdir: str, config, names: Sequence[str]):
    self.workdir = workdir
    self._path = os.path.join(workdir, "results.json")
    self._fingerprints = {name: fingerprint(config, name) for name in names}
    self.results = self._load()
    for name in names:
      old = self.results["methods"].get(name)
      if old is not None and old.get("fingerprint") != self._fingerprints[name]:
        raise ValueError(f"{self._path} already holds results for method {name!r} from a "
                         f"different config; use a new --workdir (nothing was changed)")
    self.results["config"] = config.to_dict()

  def _load(self) -> Dict[str, Any]:
    if not os.path.exists(self._path):
      return {"config": {}, "methods": {}}
    try:
      with open(self._path) as f:
        results = json.load(f)
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
          input_seconds: float = 0.0) -> None:
    self.results["methods"][name] = dict(entry, fingerprint=self._fingerprints[name])
    if jax.process_index() != 0:  # On a multi-host slice one host writes the files.
      return
    report.write_results(self.workdir, self.results)
    # Wall-clock times live apart from results.json, which stays bitwise reproducible.
    timings_path = os.path.join(self.workdir, "timings.json")
    timings = {}
    if os.path.exists(timings_path):
      try:
        with open(timings_path) as f:
          timings = json.load(f)
      except ValueError:
        timings = {}
    timings[name] = {"train_seconds": train_seconds, "input_wait_seconds": input_seconds,
                     "input_wait_fraction": input_seconds / max(train_seconds, 1e-9)}
    report.atomic_write(timings_path, json.dumps(timings, indent=1) + "\n")
