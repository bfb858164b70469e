"""Minimum-entropy regularisers of Bhojanapalli et al. 2021, Sec. 3.1 (one model per run).

kind "entropy": (1 - beta) * CE + beta * H(p)               (eq. 6)
kind "skl":     (1 - beta) * CE - beta * SKL(p, uniform)     (eq. 7)
beta is a schedule (constant by default), in [0, 1].

cfg.top_k (default None = all K classes) penalises only the top-k probabilities, for problems
with many classes: p is restricted to its k largest entries and renormalised,
q = softmax(top-k logits), and the regulariser is H(q) or SKL(q, uniform over k). The paper is
silent on this variant; this is the definition we follow (losses.top_k_entropy). top_k = K is
the full regulariser.
"""

import functools

from churn_jax.core import losses, schedules
from churn_jax.methods import base

# kind -> (full regulariser, its top-k version, sign in the objective, metric name). The metric
# keeps its name with top_k so logs and reports read the same keys.
_REGULARISERS = {
    "entropy": (losses.entropy, losses.top_k_entropy, 1.0, "entropy"),
    "skl": (losses.skl_to_uniform, losses.top_k_skl_to_uniform, -1.0, "skl_uniform"),
}


def regulariser(name: str, kind: str, top_k):
  """(logits (B, K) -> mean regulariser, sign in the objective, metric name) of `kind`."""
  full, top_k_fn, sign, reg_name = _REGULARISERS[kind]
  if top_k is None:
    return full, sign, reg_name
  if int(top_k) < 2:  # One renormalised probability is always 1: no regulariser at all.
    raise ValueError(f"method {name!r}: top_k must be >= 2 or None, got {top_k}")
  return functools.partial(top_k_fn, k=int(top_k)), sign, reg_name


def build(name, cfg, num_steps) -> base.Method:
  regulariser_fn, sign, reg_name = regulariser(name, cfg.kind, cfg.get("top_k", None))
  beta_fn = schedules.from_config(cfg.beta, num_steps)

  def loss(logits, labels, step, extra=None):
    del extra  # Needs nothing from the trainer beyond the logits.
    beta = beta_fn(step)
    ce = losses.cross_entropy(logits[0], labels)
    reg = regulariser_fn(logits[0])
    # Mean of the per-example convex combination of eqs. (6)/(7) = combination of the means.
    value = (1.0 - beta) * ce + sign * beta * reg
    return value, {"ce": ce, reg_name: reg, "coef/beta": beta}

  return base.Method(name=name, num_members=1, loss=loss)
