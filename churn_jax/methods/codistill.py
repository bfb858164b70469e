"""Co-distillation with symmetric KL and joint updates (Bhojanapalli et al. 2021, eq. 9 and 19).

  L = sum_i [(1 - e(t)) CE_i + e(t) H(p_i)] + beta(t) * mean_{i<j} SKL(p_i, p_j)

All members are updated jointly: gradients flow through both sides of the SKL term. beta(t)
is a schedule (linear ramp-up by default), e(t) the optional entropy-regulariser weight (0 =
plain co-distillation; the paper ramps it linearly too). With more than two members the
disagreement term is the mean over member pairs (so beta's scale does not depend on M), and
member i's gradient collects the SKL of every pair it belongs to. The deployed model is member 0.

cfg keys: num_members (default 2), beta (number or schedule), entropy_beta (default 0).
Co-distillation with independent updates (stop-gradient peers, Anil et al. 2018) is kind
"codistill_ce" in methods/mutual.py.
"""

import itertools

import jax.numpy as jnp

from churn_jax import losses, schedules
from churn_jax.methods import base


def build(name, cfg, num_steps) -> base.Method:
  num_members = int(cfg.get("num_members", 2))
  if num_members < 2:
    raise ValueError(f"method {name!r}: co-distillation needs num_members >= 2, got {num_members}")
  beta_fn = schedules.from_config(cfg.beta, num_steps)
  entropy_fn = schedules.from_config(cfg.get("entropy_beta", 0.0), num_steps)
  pairs = list(itertools.combinations(range(num_members), 2))

  def loss(logits, labels, step, extra=None):
    del extra  # Needs nothing from the trainer beyond the logits.
    beta, ent_beta = beta_fn(step), entropy_fn(step)
    ce = sum(losses.cross_entropy(logits[i], labels) for i in range(num_members))
    ent = sum(losses.entropy(logits[i]) for i in range(num_members))
    skl = sum(losses.symmetric_kl(logits[i], logits[j]) for i, j in pairs) / len(pairs)
    value = (1.0 - ent_beta) * ce + ent_beta * ent + beta * skl
    metrics = {"ce": ce / num_members, "skl": skl, "beta": beta}
    if cfg.get("entropy_beta", 0.0):
      metrics.update(entropy=ent / num_members, entropy_beta=ent_beta)
    return value, metrics

  return base.Method(name=name, num_members=num_members, loss=loss,
                     training_cost=float(num_members))
