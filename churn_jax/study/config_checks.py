"""Checks of plain config values that need neither JAX nor the data.

The command line runs these right after parsing, before JAX is imported (a typo costs a
Python start-up, not ~9 s of imports); `validate.validate_config` runs them again for callers
of the library. Each problem raises ValueError with one line naming the key.
"""

import math

# key -> (lowest allowed, highest allowed or None, why), for integer keys.
_INT_RANGES = {
    "seed": (0, None, "seeds are non-negative integers"),
    "num_runs": (2, None, "churn compares pairs of runs"),
    "batch_size": (1, None, ""),
    "num_train_steps": (1, None, ""),
    "eval_batch_size": (1, None, ""),
    "log_every_steps": (1, None, "the step metrics are logged every that many steps"),
    "eval_every_steps": (0, None, "0 turns evaluations during training off"),
    "checkpoint_every_steps": (0, None, "0 saves only at the end of each method"),
    "checkpoints_to_keep": (1, None, "0 would keep no checkpoint, so a stopped study could "
                            "not resume"),
}


def _fail(message: str):
  raise ValueError(f"invalid config: {message}")


def _integer(config, key: str):
  value = config.get(key) if "." not in key else _get(config, key)
  if value is None:
    return None
  if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
    _fail(f"{key} must be an integer, got {value!r}")
  try:
    return int(value)
  except (TypeError, ValueError):
    _fail(f"{key} must be an integer, got {value!r}")


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "get"):
      return None
    node = node.get(part)
  return node


def _number(config, dotted: str):
  value = _get(config, dotted)
  if value is None:
    return None
  if isinstance(value, bool):
    _fail(f"{dotted} must be a number, got {value!r}")
  try:
    return float(value)
  except (TypeError, ValueError):
    _fail(f"{dotted} must be a number, got {value!r}")


def method_names(config) -> list:
  """config.methods as a list; a name given twice is refused (it would be trained once)."""
  names = [n.strip() for n in str(config.get("methods", "")).split(",") if n.strip()]
  if not names:
    _fail("config.methods is empty; name at least one method")
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    _fail(f"config.methods names {twice[0]!r} more than once")
  return names


def _leaves(value, prefix: str = ""):
  """(dotted key, value) of every leaf of a config dict, sequences element by element."""
  if isinstance(value, dict):
    for key, sub in value.items():
      yield from _leaves(sub, f"{prefix}{key}.")
  elif isinstance(value, (list, tuple)):
    for i, sub in enumerate(value):
      yield from _leaves(sub, f"{prefix[:-1]}[{i}].")
  else:
    yield prefix[:-1], value


def check_numbers(config) -> None:
  """Every float in the config is finite (a NaN lr or an infinite beta trains garbage)."""
  for key, value in _leaves(config.to_dict()):
    if isinstance(value, float) and not math.isfinite(value):
      _fail(f"{key} = {value} is not a finite number")


def check_model_sequences(config) -> None:
  """The model's sequences (widths, channels, strides) hold numbers: config_flags parses
  `--config.model.hidden=abc` into a tuple holding 'abc'."""
  model = config.get("model")
  if model is None:
    return
  for key, value in model.to_dict().items():
    if isinstance(value, (list, tuple)):
      for sub_key, sub in _leaves(value, f"model.{key}."):
        if isinstance(sub, bool) or not isinstance(sub, (int, float)):
          _fail(f"{sub_key} = {sub!r} must be a number (model.{key} = {tuple(value)!r})")


def check_values(config) -> None:
  """Finite numbers and the ranges of the study's plain keys (no JAX, no data)."""
  check_numbers(config)
  check_model_sequences(config)
  for key, (low, high, why) in _INT_RANGES.items():
    value = _integer(config, key)
    if value is None:
      continue
    if value < low or (high is not None and value > high):
      _fail(f"{key} must be >= {low}{f' ({why})' if why else ''}, got {value}")
  method_names(config)
  warmup = _integer(config, "lr.warmup_steps")
  if warmup is not None and warmup < 0:
    _fail(f"lr.warmup_steps must be >= 0, got {warmup}")
  base = _number(config, "lr.base")
  if base is not None and base <= 0:
    _fail(f"lr.base must be > 0, got {base}")
  factor = _number(config, "lr.decay_factor")
  if factor is not None and not 0 < factor <= 1:
    _fail(f"lr.decay_factor must lie in (0, 1], got {factor:g}")
  momentum = _number(config, "optimizer.momentum")
  if momentum is not None and not 0 <= momentum < 1:
    _fail(f"optimizer.momentum must lie in [0, 1) (1 or more diverges), got {momentum:g}")
  decay = _number(config, "optimizer.weight_decay")
  if decay is not None and decay < 0:
    _fail(f"optimizer.weight_decay must be >= 0, got {decay:g}")
  alpha = _number(config, "schurn_alpha")
  if alpha is not None and alpha <= 0:
    _fail(f"schurn_alpha must be > 0, got {alpha}")
  if not isinstance(config.get("plots", True), bool):
    _fail(f"plots must be True or False, got {config.get('plots')!r}")
