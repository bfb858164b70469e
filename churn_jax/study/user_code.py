"""Checks of the user's own code named by import path (model, dataset, method kinds).

Before anything is written: the path imports, the object has the contract's shape (a
flax.linen Module class with `num_classes`; a dataset function taking the data config's
fields; a method builder `(name, cfg, num_steps)`), and, once the data is loaded, the model's
logits and the method's loss have the shapes the trainer needs (traced with jax.eval_shape:
no compile, no FLOPs). Each failure is one ValueError line naming the config key.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from churn_jax import methods, models
from churn_jax.core import import_path


def _fail(key: str, message: str):
  raise ValueError(f"invalid config: {key}: {message}")


def _method_kinds(config):
  """(name, kind) of every selected method whose kind is an import path."""
  names = [n.strip() for n in str(config.methods).split(",") if n.strip()]
  for name in names:
    cfg = config.method_configs.get(name)
    if cfg is not None and import_path.is_import_path(cfg.get("kind", name)):
      yield name, cfg.get("kind", name)


def check_config(config) -> None:
  """Import-path model, dataset and method kinds resolve and have the right signatures."""
  model_name = config.model.get("name", "")
  if import_path.is_import_path(model_name):
    model_cfg = {k: v for k, v in config.model.items() if k != "name"}
    try:
      models.get_model(model_name, 2, **model_cfg)
    except (ValueError, TypeError) as e:
      _fail("model.name", str(e))
  data_name = config.data.get("name", "")
  if import_path.is_import_path(data_name) and not config.data.get("npz_path"):
    kwargs = tuple(k for k in config.data.keys() if k not in ("name", "npz_path"))
    try:
      import_path.check_callable(data_name, import_path.resolve(data_name), 0, kwargs)
    except ValueError as e:
      _fail("data.name", str(e))
  for name, kind in _method_kinds(config):
    try:
      import_path.check_callable(kind, import_path.resolve(kind), 3)
    except ValueError as e:
      _fail(f"method_configs.{name}.kind", str(e))


def _model_logits_shape(model, input_shape):
  x = jax.ShapeDtypeStruct((2,) + tuple(input_shape), jnp.float32)

  def forward(x):
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    return model.apply(variables, x, train=False)
  return jax.eval_shape(forward, x)


def check_with_dataset(config, dataset) -> None:
  """The user's model gives logits (B, K) on the data; the user's losses give a scalar."""
  k = int(dataset.num_classes)
  model_name = config.model.get("name", "")
  if import_path.is_import_path(model_name):
    model = models.get_model(model_name, k, **{n: v for n, v in config.model.items()
                                                 if n != "name"})
    try:
      out = _model_logits_shape(model, dataset.input_shape)
    except Exception as e:  # pylint: disable=broad-except  # The user's module: one line.
      first = str(e).strip().splitlines()[0] if str(e).strip() else ""
      shape = (2,) + tuple(dataset.input_shape)
      _fail("model.name", f"{model_name!r} failed on inputs of shape {shape} with "
            f"{type(e).__name__}: {first}")
    if not hasattr(out, "shape") or tuple(out.shape) != (2, k):
      _fail("model.name", f"{model_name!r} returns {getattr(out, 'shape', type(out).__name__)} "
            f"on a batch of 2; expected logits (2, {k}) (batch, num_classes)")
  for name, kind in _method_kinds(config):
    method = methods.build(name, config.method_configs[name], int(config.num_train_steps))
    if method.teacher or method.stale_refresh_steps or method.model_ensemble_size > 1:
      continue  # Its loss reads `extra` the trainer fills; the step's chex checks cover it.
    m = method.num_members
    logits = jax.ShapeDtypeStruct((m, 2, k), jnp.float32)
    labels = jax.ShapeDtypeStruct((m, 2) if method.member_data == "independent" else (2,),
                                  jnp.int32)
    step = jax.ShapeDtypeStruct((), jnp.int32)
    raw = getattr(method.loss, "unchecked", method.loss)
    try:
      value, metrics = jax.eval_shape(lambda a, b, c: raw(a, b, c, {}), logits, labels, step)
    except Exception as e:  # pylint: disable=broad-except
      first = str(e).strip().splitlines()[0] if str(e).strip() else ""
      _fail(f"method_configs.{name}.kind", f"{kind!r}: loss(logits ({m}, 2, {k}), labels, step, "
            f"extra) raised {type(e).__name__}: {first}; it must return (scalar, dict)")
    if not isinstance(metrics, Mapping):
      _fail(f"method_configs.{name}.kind", f"{kind!r}: loss must return (scalar, dict of "
            f"scalars); its second value is a {type(metrics).__name__}")
    bad = [n for n, v in metrics.items() if np.shape(v) != ()]
    if np.shape(value) != () or bad:
      _fail(f"method_configs.{name}.kind", f"{kind!r}: loss must return (scalar, dict of "
            f"scalars); got a value of shape {np.shape(value)}"
            f"{', metrics ' + ', '.join(bad) + ' not scalar' if bad else ''}")
