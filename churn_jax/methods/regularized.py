"""Minimum-entropy regularisers of Bhojanapalli et al. 2021, Sec. 3.1 (one model per run).

kind "entropy": (1 - beta) * CE + beta * H(p)               (eq. 6)
kind "skl":     (1 - beta) * CE - beta * SKL(p, uniform)     (eq. 7)
beta is a schedule (constant by default), in [0, 1].
"""

from churn_jax import losses, schedules
from churn_jax.methods import base

_OBJECTIVES = {
    "entropy": (losses.minimum_entropy_objective, losses.entropy, "entropy"),
    "skl": (losses.skl_uniform_objective, losses.skl_to_uniform, "skl_uniform"),
}


def build(name, cfg, num_steps) -> base.Method:
  objective, regulariser, reg_name = _OBJECTIVES[cfg.kind]
  beta_fn = schedules.from_config(cfg.beta, num_steps)

  def loss(logits, labels, step):
    beta = beta_fn(step)
    value = objective(logits[0], labels, beta)
    return value, {"ce": losses.cross_entropy(logits[0], labels),
                   reg_name: regulariser(logits[0]), "beta": beta}

  return base.Method(name=name, num_members=1, loss=loss)
