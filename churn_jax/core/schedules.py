"""Step -> value schedules for learning rates and loss coefficients.

Every coefficient that ramps (co-distillation weight, entropy weight, burn-in) and every
learning-rate warm-up is built here from optax schedules, so warm-ups are written once.
"""

from typing import Any, Mapping, Sequence

import numpy as np
import optax


def _value(value):
  """A coefficient in float32: a number, or a traced per-run value of a sweep inside the stack
  (churn_jax/study/sweeps.py), kept as it is. Numbers become numpy float32 (no device needed at
  build time), so arithmetic on a coefficient rounds the same whether it is a number or
  traced, and a point of a stacked sweep computes what the same number computes alone."""
  return np.float32(value) if isinstance(value, (int, float, np.number)) else value


def constant(value: float) -> optax.Schedule:
  value = _value(value)
  return lambda count: value


def linear_rampup(value: float, rampup_steps: int, start_step: int = 0) -> optax.Schedule:
  """0 before `start_step`, then linear from 0 to `value` over `rampup_steps`, then flat.

  This is the linear ramp-up of Bhojanapalli et al. 2021 (App. C): beta(t) = value * min(1, t/T).
  """
  if rampup_steps <= 0:
    return step_burnin(value, start_step)
  ramp = optax.linear_schedule(0.0, _value(value), int(rampup_steps))
  if start_step <= 0:
    return ramp
  return optax.join_schedules([optax.constant_schedule(0.0), ramp], [int(start_step)])


def step_burnin(value: float, burnin_steps: int) -> optax.Schedule:
  """Anil et al. 2018's step-wise ramp-up: 0 for t < burnin_steps, `value` afterwards."""
  if burnin_steps <= 0:
    return constant(value)
  return optax.join_schedules(
      [optax.constant_schedule(0.0), constant(value)],
      [int(burnin_steps)])


def warmup_step_decay(base_lr: float, warmup_steps: int, decay_boundaries: Sequence[int] = (),
                      decay_factor: float = 0.1) -> optax.Schedule:
  """Linear warm-up from 0 to `base_lr`, then multiply by `decay_factor` at each boundary.

  Boundaries are absolute step numbers (the paper's "x0.1 at epochs 200, 300, 400" after
  conversion to steps).
  """
  boundaries = sorted(int(b) for b in decay_boundaries)
  decay = optax.piecewise_constant_schedule(
      float(base_lr), {max(b - warmup_steps, 1): decay_factor for b in boundaries})
  if warmup_steps <= 0:
    return optax.piecewise_constant_schedule(
        float(base_lr), {max(b, 1): decay_factor for b in boundaries})
  warmup = optax.linear_schedule(0.0, float(base_lr), int(warmup_steps))
  return optax.join_schedules([warmup, decay], [int(warmup_steps)])


def from_config(cfg: Mapping[str, Any] | float, num_steps: int) -> optax.Schedule:
  """Builds a coefficient schedule from a config entry.

  A plain number (or a traced value, for a sweep inside the stack) is a constant. A mapping
  has `kind` in {constant, linear_rampup, step_burnin} and `value`; ramp lengths are
  `rampup_steps`/`burnin_steps`, or the same as a fraction of training (`rampup_fraction`,
  `burnin_fraction`), so one config serves a quick run and a long one.
  """
  if not hasattr(cfg, "get"):
    return constant(cfg)
  kind = cfg.get("kind", "constant")
  value = _value(cfg["value"])
  if kind == "constant":
    return constant(value)
  if kind == "linear_rampup":
    steps = _steps(cfg, "rampup", num_steps)
    return linear_rampup(value, steps, int(cfg.get("start_step", 0)))
  if kind == "step_burnin":
    return step_burnin(value, _steps(cfg, "burnin", num_steps))
  raise ValueError(f"unknown schedule kind {kind!r}; known: constant, linear_rampup, step_burnin")


def _steps(cfg: Mapping[str, Any], prefix: str, num_steps: int) -> int:
  if cfg.get(f"{prefix}_steps") is not None:
    return int(cfg[f"{prefix}_steps"])
  return int(round(float(cfg.get(f"{prefix}_fraction", 0.0)) * num_steps))
