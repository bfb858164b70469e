"""Method registry: a config entry's `kind` names the module that builds the Method.

A kind with a colon is an import path to the user's own builder, e.g. "my_pkg.losses:build":
the same contract as the built-in ones, `build(name, cfg, num_steps) -> Method`
(churn_jax/methods/base.py), found without an edit to churn_jax.
"""

from churn_jax.methods import (anti_distill, baseline, be_distill, codistill, distill, ensemble,
                               mutual, regularized)
from churn_jax.core import import_path
from churn_jax.methods.base import Method

_BUILDERS = {
    "baseline": baseline.build,
    "entropy": regularized.build,
    "skl": regularized.build,
    "codistill": codistill.build,
    "codistill_ce": mutual.build_codistill_ce,
    "mutual": mutual.build,
    "ensemble": ensemble.build,
    "anti_distill": anti_distill.build,
    "distill": distill.build,
    "be_distill": be_distill.build,
}
METHOD_KINDS = tuple(sorted(_BUILDERS))


def build(name: str, cfg, num_steps: int) -> Method:
  """Builds the method called `name` from its config entry (which has a `kind`)."""
  kind = cfg.get("kind", name)
  if import_path.is_import_path(kind):
    return _build_imported(name, kind, cfg, num_steps)
  if kind not in _BUILDERS:
    raise ValueError(f"method {name!r}: unknown kind {kind!r}; known: {', '.join(METHOD_KINDS)}, "
                     f"or an import path 'package.module:build'")
  return _BUILDERS[kind](name, cfg, num_steps)


def _build_imported(name: str, kind: str, cfg, num_steps: int) -> Method:
  """The Method the user's builder at import path `kind` returns (checked: one line each)."""
  try:
    builder = import_path.check_callable(kind, import_path.resolve(kind), 3)
  except ValueError as e:
    raise ValueError(f"method {name!r}: kind {e}") from None
  try:
    method = builder(name, cfg, num_steps)
  except ValueError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # The user's code: one line.
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise ValueError(f"method {name!r}: kind {kind!r} raised {type(e).__name__}: {first}"
                     ) from None
  if not isinstance(method, Method):
    raise ValueError(f"method {name!r}: kind {kind!r} returned {type(method).__name__}, not a "
                     f"churn_jax.methods.base.Method")
  if method.name != name:
    raise ValueError(f"method {name!r}: kind {kind!r} returned a Method named "
                     f"{method.name!r}; pass the name it is given")
  return method
