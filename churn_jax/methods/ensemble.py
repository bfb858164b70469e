"""Deep ensembles (Lakshminarayanan et al. 2017): M independently trained members per run.

  L = sum_i CE_i

No term couples the members, so member i receives exactly the gradient of its own CE (the sum
keeps each member's scale equal to a single model's, unlike a mean over members, which would
shrink every member's effective learning rate by M). Members differ only by their
initialisation and, where the trainer varies it, their data order. The deployed prediction is
the mean of the members' probabilities; training and inference cost M models.

cfg keys: num_members (default 2).
"""

from churn_jax import losses
from churn_jax.methods import base


def build(name, cfg, num_steps) -> base.Method:
  del num_steps  # No coefficients.
  num_members = int(cfg.get("num_members", 2))

  def loss(logits, labels, step, extra=None):
    del extra  # Needs nothing from the trainer beyond the logits.
    del step
    ce = sum(losses.cross_entropy(logits[i], labels) for i in range(num_members))
    return ce, {"ce": ce / num_members}

  return base.Method(name=name, num_members=num_members, loss=loss, prediction="ensemble_mean",
                     training_cost=float(num_members), inference_cost=float(num_members))
