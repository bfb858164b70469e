"""Co-distillation with symmetric KL and joint updates (Bhojanapalli et al. 2021, eq. 9 and 19).

  L = sum_i [(1 - e(t) - s(t)) CE_i + e(t) H(p_i) - s(t) SKL(p_i, u)]
      + beta(t) * mean_{i<j} SKL(p_i, p_j)

All members are updated jointly: gradients flow through both sides of the SKL term. beta(t)
is a schedule (linear ramp-up by default). e(t) and s(t) are the weights of the minimum-entropy
regularisers of eq. 19 (regularised co-distillation): the entropy H(p_i) (eq. 6) and the
symmetric KL to the uniform distribution u (eq. 7), both 0 by default (plain co-distillation);
the paper ramps them linearly too and uses one of them at a time. `top_k` restricts both
regularisers to the top-k probabilities (methods/regularized.py). With more than two members
the disagreement term is the mean over member pairs (so beta's scale does not depend on M),
and member i's gradient collects the SKL of every pair it belongs to. Members share every
batch (member_data "shared": the SKL compares them on the same examples). The deployed model
is member 0.

cfg keys: num_members (default 2), beta (number or schedule), entropy_beta and skl_beta
(numbers or schedules, default 0), top_k (default None). Co-distillation with independent
updates (stop-gradient peers, Anil et al. 2018) is kind "codistill_ce" in methods/mutual.py.
"""

import itertools

from churn_jax.core import losses, schedules
from churn_jax.methods import base, regularized


def build(name, cfg, num_steps) -> base.Method:
  num_members = int(cfg.get("num_members", 2))
  if num_members < 2:
    raise ValueError(f"method {name!r}: co-distillation needs num_members >= 2, got {num_members}")
  beta_fn = schedules.from_config(cfg.beta, num_steps)
  entropy_fn = schedules.from_config(cfg.get("entropy_beta", 0.0), num_steps)
  skl_fn = schedules.from_config(cfg.get("skl_beta", 0.0), num_steps)
  top_k = cfg.get("top_k", None)
  entropy_reg, _, _ = regularized.regulariser(name, "entropy", top_k)
  skl_reg, _, _ = regularized.regulariser(name, "skl", top_k)
  pairs = list(itertools.combinations(range(num_members), 2))

  def loss(logits, labels, step, extra=None):
    del extra  # Needs nothing from the trainer beyond the logits.
    beta, ent_beta, skl_beta = beta_fn(step), entropy_fn(step), skl_fn(step)
    ce = sum(losses.cross_entropy(logits[i], labels) for i in range(num_members))
    ent = sum(entropy_reg(logits[i]) for i in range(num_members))
    sklu = sum(skl_reg(logits[i]) for i in range(num_members))
    skl = sum(losses.symmetric_kl(logits[i], logits[j]) for i, j in pairs) / len(pairs)
    value = (1.0 - ent_beta - skl_beta) * ce + ent_beta * ent - skl_beta * sklu + beta * skl
    return value, {"ce": ce / num_members, "skl": skl, "entropy": ent / num_members,
                   "skl_uniform": sklu / num_members, "coef/beta": beta,
                   "coef/entropy_beta": ent_beta, "coef/skl_beta": skl_beta}

  return base.Method(name=name, num_members=num_members, loss=loss,
                     training_cost=float(num_members))
