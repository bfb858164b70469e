"""'package.module:attribute' strings: the user's own models, datasets and methods by name.

A config names code outside churn_jax as `config.model.name = "my_pkg.nets:WideNet"`,
`config.data.name = "my_pkg.data:load"` or a method entry's `kind = "my_pkg.losses:build"`.
The registries (models/, data/, methods/) call `resolve` for any name holding a colon; every
failure is one ValueError line naming the path, so validation can prefix the config key.
"""

import importlib
import inspect
import re
from typing import Any, Callable

# module path (dotted identifiers) ':' attribute path (dotted identifiers).
_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_import_path(name) -> bool:
  """True for a string of the form 'module:attribute' (a colon marks it)."""
  return isinstance(name, str) and ":" in name


def resolve(path: str) -> Any:
  """The object `path` ('pkg.module:Attr' or 'pkg.module:Outer.inner') names.

  Raises:
    ValueError: malformed path, module not importable (also when importing it fails), or no
      such attribute; one line.
  """
  if not isinstance(path, str) or not _PATTERN.match(path):
    raise ValueError(f"{path!r} is not an import path 'package.module:attribute'")
  module_name, attr_path = path.split(":")
  try:
    obj = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    raise ValueError(f"{path!r}: cannot import module {module_name!r} ({e}); is its package "
                     f"on PYTHONPATH or installed?") from None
  except Exception as e:  # pylint: disable=broad-except  # The user's module failed to import.
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise ValueError(f"{path!r}: importing {module_name!r} raised "
                     f"{type(e).__name__}: {first}") from None
  for attr in attr_path.split("."):
    if not hasattr(obj, attr):
      raise ValueError(f"{path!r}: module {module_name!r} has no attribute {attr_path!r}")
    obj = getattr(obj, attr)
  return obj


def check_callable(path: str, obj: Any, num_positional: int, kwargs=()) -> Callable:
  """`obj` if it is callable with `num_positional` positional arguments and `kwargs` keywords.

  Raises:
    ValueError: not callable, or its signature refuses those arguments (one line).
  """
  if not callable(obj):
    raise ValueError(f"{path!r} is a {type(obj).__name__}, not a callable")
  try:
    signature = inspect.signature(obj)
  except (TypeError, ValueError):  # Builtins without a signature: nothing to check.
    return obj
  try:
    signature.bind(*range(num_positional), **{k: None for k in kwargs})
  except TypeError as e:
    raise ValueError(f"{path!r} has signature {signature}, which cannot take "
                     f"{num_positional} positional argument(s)"
                     f"{' and ' + ', '.join(kwargs) if kwargs else ''}: {e}") from None
  return obj
