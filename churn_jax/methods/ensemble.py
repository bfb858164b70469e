"""Deep ensembles (Lakshminarayanan et al. 2017): M independently trained members per run.

  L = sum_i CE_i(member i's batch)

No term couples the members, so member i receives exactly the gradient of its own CE (the sum
keeps each member's scale equal to a single model's, unlike a mean over members, which would
shrink every member's effective learning rate by M). As in the papers' ensembles (separate
trainings), members differ in initialisation and data order: member_data "independent" gives
each member its own data seed (Method.member_data; member 0 of run r sees run r's batches, so
it is exactly the baseline's run r). member_data "shared" feeds all members the run's batch
(members then differ only by initialisation). The deployed prediction is the mean of the
members' probabilities; training and inference cost M models.

cfg keys: num_members (default 2), member_data ("independent" (default) | "shared").
"""

from churn_jax.core import losses
from churn_jax.methods import base


def build(name, cfg, num_steps) -> base.Method:
  del num_steps  # No coefficients.
  num_members = int(cfg.get("num_members", 2))

  def loss(logits, labels, step, extra=None):
    del extra  # Needs nothing from the trainer beyond the logits.
    del step
    labels = base.member_labels(labels, num_members)
    ce = sum(losses.cross_entropy(logits[i], labels[i]) for i in range(num_members))
    return ce, {"ce": ce / num_members}

  return base.Method(name=name, num_members=num_members, loss=loss, prediction="ensemble_mean",
                     training_cost=float(num_members), inference_cost=float(num_members),
                     member_data=cfg.get("member_data", "independent"))
