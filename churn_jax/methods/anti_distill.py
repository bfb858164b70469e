"""Anti-Distillation (Shamir & Coviello 2020, "Anti-Distillation: Improving reproducibility of
deep networks"): an ensemble whose members are pushed apart by de-correlating their outputs
over mini-batches, so the ensemble mean averages out more of the per-member randomness.

  L = sum_i CE_i + beta(t) * mean_{i<j} C(o_i, o_j)

o_i are member i's outputs on the batch (softmax probabilities by default, or logits), and
C = losses.batch_correlation_penalty: the mean over classes of the squared Pearson correlation
across the mini-batch. The paper's abstract does not pin down the exact form; we square the
correlation so the penalty is minimised at zero correlation rather than rewarding
anti-correlation, and average over member pairs so beta's scale does not depend on M. Members
are updated jointly (the penalty's gradient reaches both members of a pair). The deployed
prediction is the ensemble mean; training and inference cost M models. Members share every
batch (member_data "shared"): the penalty correlates their outputs over the same examples.

cfg keys: num_members (default 2), beta (the paper's lambda; number or schedule),
outputs ('probs' | 'logits', default 'probs'), eps (default 1e-6, see the penalty).
"""

import itertools

import jax

from churn_jax.core import losses, schedules
from churn_jax.methods import base

_OUTPUTS = {"probs": jax.nn.softmax, "logits": lambda z: z}


def build(name, cfg, num_steps) -> base.Method:
  num_members = int(cfg.get("num_members", 2))
  if num_members < 2:
    raise ValueError(f"method {name!r}: anti-distillation needs num_members >= 2, "
                     f"got {num_members}")
  outputs = cfg.get("outputs", "probs")
  if outputs not in _OUTPUTS:
    raise ValueError(f"method {name!r}: outputs must be one of {tuple(_OUTPUTS)}, got {outputs!r}")
  to_outputs = _OUTPUTS[outputs]
  eps = float(cfg.get("eps", 1e-6))
  beta_fn = schedules.from_config(cfg.beta, num_steps)
  pairs = list(itertools.combinations(range(num_members), 2))

  def loss(logits, labels, step, extra=None):
    del extra  # Needs nothing from the trainer beyond the logits.
    beta = beta_fn(step)
    ce = sum(losses.cross_entropy(logits[i], labels) for i in range(num_members))
    out = to_outputs(logits)
    corr = sum(losses.batch_correlation_penalty(out[i], out[j], eps) for i, j in pairs) / len(pairs)
    return ce + beta * corr, {"ce": ce / num_members, "correlation": corr, "coef/beta": beta}

  return base.Method(name=name, num_members=num_members, loss=loss, prediction="ensemble_mean",
                     training_cost=float(num_members), inference_cost=float(num_members))
