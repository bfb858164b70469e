"""Config checks that run before anything is loaded, compiled or written.

Each problem raises ValueError with one line that names the offending key, so a typo costs
seconds, not a compile and a half-written workdir.
"""

import math

import jax
import numpy as np

from churn_jax import data, methods, models
from churn_jax.configs import config_lib
from churn_jax.engine import sharding, stack
from churn_jax.engine import step as step_lib
from churn_jax.runtime import compile_cache
from churn_jax.study import config_checks
from churn_jax.study import settings, user_code

# Allowed ranges of coefficients, per method kind (a schedule is checked at its peak value).
_COEFFICIENT_RANGES = {
    "entropy": {"beta": (0.0, 1.0)},
    "skl": {"beta": (0.0, 1.0)},
    "codistill": {"beta": (0.0, math.inf), "entropy_beta": (0.0, 1.0), "skl_beta": (0.0, 1.0)},
    "codistill_ce": {"beta": (0.0, math.inf)},
    "mutual": {"beta": (0.0, math.inf)},
    "anti_distill": {"beta": (0.0, math.inf)},
}


def _fail(message: str):
  raise ValueError(f"invalid config: {message}")


def _peak(value):
  return float(value if isinstance(value, (int, float)) else value.get("value", 0.0))


def _check_methods(config, num_steps: int) -> set:
  """Checks every selected method; returns the set of their member counts."""
  names = config_checks.method_names(config)
  member_counts = set()
  for name in names:
    if name not in config.method_configs:
      _fail(f"config.methods: unknown method {name!r}; configured: "
            f"{', '.join(sorted(config.method_configs))}")
    cfg = config.method_configs[name]
    kind = cfg.get("kind", name)
    for key, (lo, hi) in _COEFFICIENT_RANGES.get(kind, {}).items():
      if cfg.get(key) is None:
        continue
      value = _peak(cfg[key])
      if not lo <= value <= hi:
        _fail(f"method_configs.{name}.{key} = {value:g} is outside [{lo:g}, {hi:g}]")
    try:
      method = methods.build(name, cfg, num_steps)
    except (ValueError, KeyError, AttributeError, TypeError) as e:
      _fail(f"method_configs.{name}: {e}")
    if method.teacher is not None:
      teacher_cfg = config.method_configs.get(method.teacher)
      if teacher_cfg is None:
        _fail(f"method_configs.{name}.teacher: unknown method {method.teacher!r}")
      if teacher_cfg.get("teacher"):
        _fail(f"method_configs.{name}.teacher: {method.teacher!r} is itself a student; "
              f"a teacher must be a one-stage method")
      teacher_members = methods.build(method.teacher, teacher_cfg, num_steps).num_members
      if method.model_ensemble_size > 1 and teacher_members != method.model_ensemble_size:
        _fail(f"method_configs.{name}: {method.model_ensemble_size} student members need a "
              f"teacher with as many members; {method.teacher!r} has {teacher_members}")
      member_counts.add(teacher_members)
    if method.student_model is not None:  # The architecture this method trains (BE student).
      model_cfg = dict(config.model)
      try:
        student_name, student_kwargs = method.student_model(model_cfg.pop("name"), model_cfg)
        models.get_model(student_name, 2, **student_kwargs)
      except ValueError as e:
        _fail(f"method_configs.{name}: {e}")
    member_counts.add(method.num_members)
  return member_counts


def _leaves(value, prefix: str = ""):
  return config_checks._leaves(value, prefix)  # pylint: disable=protected-access


def _check_model_sizes(model_cfg: dict) -> None:
  """Widths, channels, strides and depths are positive integers (padding may be 0)."""
  for key, value in _leaves({k: v for k, v in model_cfg.items() if k != "name"}):
    if isinstance(value, bool) or not isinstance(value, int):
      continue
    low = 0 if key.split("[")[0] == "padding" else 1
    if value < low:
      _fail(f"model.{key} = {value} must be >= {low}")


def _check_numerics(config) -> None:
  """compute_dtype, matmul_precision, remat, microbatches, steps_per_loop, profile_steps,
  mesh (engine/numerics.py, engine/throughput.py, engine/sharding.py; helper accel)."""
  for problem in settings.check_numerics(config):
    _fail(problem)
  try:
    settings.trace_window(config)
  except ValueError:
    _fail(f"profile_steps must be '' or 'FIRST:COUNT', got {config.get('profile_steps')!r}")


def validate_config(config) -> None:
  """Checks the config itself (no data needed)."""
  config_checks.check_values(config)  # Also run by the command line before JAX loads.
  user_code.check_config(config)  # Import-path model / dataset / method kinds.
  if config.optimizer.get("name", "sgd") not in ("sgd", "adam"):
    _fail(f"unknown optimizer {config.optimizer.name!r}; known: adam, sgd")
  try:
    compile_cache.directory(config.get("compile_cache_dir", ""))
  except ValueError as e:
    _fail(str(e))
  _check_numerics(config)
  step_lib.check_compiler_options()  # $CHURN_JAX_CPU_COMPILER_OPTIONS: not the config's.
  if config.strategy not in stack.STRATEGIES:
    _fail(f"unknown strategy {config.strategy!r}; known: {', '.join(stack.STRATEGIES)}")
  try:
    config_lib.vary_set(config)
  except ValueError as e:
    _fail(str(e))
  name = config.data.get("name", "")
  known = data.DATASET_NAMES + getattr(data, "TFDS_NAMES", ())
  if not config.data.get("npz_path") and name not in known and ":" not in name:
    _fail(f"unknown dataset {name!r}; known: {', '.join(known)}")
  model_cfg = dict(config.model)
  _check_model_sizes(config.model.to_dict())
  try:
    models.get_model(model_cfg.pop("name", None), 2, **model_cfg)
  except ValueError as e:
    _fail(str(e))
  strategy = stack.resolve_strategy(config.strategy, models.uses_convolutions(config.model.name))
  for num_members in sorted(_check_methods(config, int(config.num_train_steps))):
    try:  # Each method gets its own mesh: check the batch against every one.
      spec = sharding.parse_mesh(config.get("mesh", ""))
      if spec is None:
        sharding.mesh_shape(jax.device_count(), int(config.num_runs), num_members,
                            int(config.batch_size), strategy)
      else:
        sharding.resolve_mesh_shape(spec, jax.device_count(), int(config.num_runs),
                                    num_members, int(config.batch_size), strategy)
    except ValueError as e:
      _fail(str(e))


def validate_with_dataset(config, dataset) -> None:
  """Checks that need the loaded data."""
  present = np.unique(np.asarray(dataset.y_train)) if hasattr(dataset, "y_train") else None
  count = dataset.num_classes if present is None else min(len(present), dataset.num_classes)
  if count < 2:
    source = config.data.get("npz_path") or config.data.get("name")
    _fail(f"the training data has {count} class; churn and accuracy need at least 2 (check "
          f"the labels of {source})")
  if config.batch_size > dataset.num_train:
    _fail(f"batch_size {config.batch_size} exceeds the {dataset.num_train} training examples")
  user_code.check_with_dataset(config, dataset)
