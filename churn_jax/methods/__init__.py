"""Method registry: a config entry's `kind` names the module that builds the Method."""

from churn_jax.methods import (anti_distill, baseline, be_distill, codistill, distill, ensemble,
                               mutual, regularized)
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
  if kind not in _BUILDERS:
    raise ValueError(f"method {name!r}: unknown kind {kind!r}; known: {', '.join(METHOD_KINDS)}")
  return _BUILDERS[kind](name, cfg, num_steps)
