"""Two-stage sweeps as App. A runs them: a later stage's fixed coefficients (a sweep's
`from_selected` keys) take the point selected from an earlier stage's finished results, and
protocol.md records where each came from. The stacked sweep of one stage is study/sweeps.py.
"""

import dataclasses
import time
from typing import Any, Dict, List, Sequence, Tuple

from absl import logging

from churn_jax.protocol import tables as protocol_tables
from churn_jax.study import sweeps as sweeps_lib


def stages(sweeps: Sequence[sweeps_lib.Sweep]) -> List[List[sweeps_lib.Sweep]]:
  """The sweeps in stages: a sweep runs one stage after the latest sweep it takes a value from."""
  by_method = {s.method: s for s in sweeps}
  level = {}
  def depth(sweep, seen=()):
    if sweep.method in seen:
      raise ValueError(f"sweep {sweep.method}: its fixed coefficients form a cycle")
    if sweep.method not in level:
      sources = []
      for key, source in sweep.fixed_from:
        if source not in by_method:
          raise ValueError(f"sweep {sweep.method}: {key} comes from {source!r}, which is not a "
                           f"sweep of this study")
        sources.append(depth(by_method[source], seen + (sweep.method,)))
      level[sweep.method] = 1 + max(sources, default=-1)
    return level[sweep.method]
  for sweep in sweeps:
    depth(sweep)
  out = [[] for _ in range(1 + max(level.values(), default=-1))]
  for sweep in sweeps:
    out[level[sweep.method]].append(sweep)
  return out


def resolve_fixed(config, sweep: sweeps_lib.Sweep, results: Dict[str, Any], split: str):
  """(config with `sweep`'s fixed keys set to their sources' selected points, the sweep with
  the selection recorded). The selection is the protocol tables' (lowest mean churn on
  `split`) over the source sweep's finished points."""
  config = config.copy_and_resolve_references()
  fixed, method_cfg = [], config.method_configs[sweep.method]
  for key, source in sweep.fixed_from:
    rows = [r for r in protocol_tables.groups(results).get(source, []) if r[1] is not None]
    point = protocol_tables.select(rows, split)
    if point is None:
      raise ValueError(f"sweep {sweep.method}: no finished point of {source!r} to take {key} "
                       f"from")
    value = float(results["methods"][point]["sweep"]["value"])
    try:
      method_cfg = sweeps_lib.point_config(method_cfg, key, value)
    except ValueError as e:
      raise ValueError(f"sweep {sweep.method}: {e}") from None
    fixed.append((key, value, source, point, split))
  with config.unlocked():
    config.method_configs[sweep.method] = method_cfg
  return config, dataclasses.replace(sweep, fixed=tuple(fixed))


def train_staged(config, workdir: str, sweeps: Sequence[sweeps_lib.Sweep] = (), plain: Sequence[str] = (),
                 validation_fraction: float = 0.0) -> Dict[str, Any]:
  """train_study stage by stage (`stages`) in one workdir; a later stage's fixed keys take
  the values selected from the earlier stages' results (on validation churn when
  `validation_fraction` > 0, else on test churn). Returns the last stage's results (every
  entry of the workdir), "failed" of all stages, and "stages": [[sweep method, ...], ...]."""
  split = "validation" if validation_fraction else "test"
  failed, results, staged = [], None, stages(sweeps)
  for level, stage in enumerate(staged or [[]]):
    stage_config, resolved = config, []
    for sweep in stage:
      if sweep.fixed_from:
        stage_config, sweep = resolve_fixed(stage_config, sweep, results, split)
      resolved.append(sweep)
    if level:
      logging.info("stage %d: %s", level + 1, "; ".join(
          f"{s.method} with " + ", ".join(f"{k}={v:g} ({p}, on {sp} churn)"
                                          for k, v, _, p, sp in s.fixed) for s in resolved))
    results = sweeps_lib.train_study(stage_config, workdir, resolved, plain, validation_fraction)
    failed += [f for f in results.pop("failed") if f not in failed]
  return dict(results, failed=failed, stages=[[s.method for s in st] for st in staged])


def timed_study(*args, **kwargs) -> Tuple[Dict[str, Any], float]:
  """train_staged and its wall time in seconds (compilation included)."""
  start = time.perf_counter()
  results = train_staged(*args, **kwargs)
  return results, time.perf_counter() - start
