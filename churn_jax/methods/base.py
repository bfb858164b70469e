"""What a method is: members, how the deployed prediction is formed, and a pure loss.

A method never touches optimizers, data or devices. The trainer applies every member of a run
to the run's batch and hands the stacked logits to `Method.loss`; the loss returns a scalar
and a dict of scalar metrics for logging. Runs never see each other: the trainer maps the
loss over the run axis and sums, so the gradient of run r is the gradient of run r's loss.
"""

import dataclasses
from typing import Callable, Mapping, Tuple

import jax
import jax.numpy as jnp

# (logits (M, B, K), labels (B,), step ()) -> (scalar loss, {name: scalar}).
LossFn = Callable[[jax.Array, jax.Array, jax.Array], Tuple[jax.Array, Mapping[str, jax.Array]]]

PREDICTIONS = ("member0", "ensemble_mean")


@dataclasses.dataclass(frozen=True)
class Method:
  """A churn-reduction method as data plus one pure loss.

  Attributes:
    name: the config name the results are reported under.
    num_members: models trained together inside one run (M).
    loss: pure function of (member logits (M, B, K), labels (B,), step).
    prediction: "member0" deploys the first member (co-distillation keeps either model,
      Bhojanapalli et al. 2021, Sec. 3.2); "ensemble_mean" deploys the mean of the members'
      probabilities.
    training_cost: training compute in multiples of one model.
    inference_cost: inference compute in multiples of one model.
  """
  name: str
  num_members: int
  loss: LossFn
  prediction: str = "member0"
  training_cost: float = 1.0
  inference_cost: float = 1.0

  def __post_init__(self):
    if self.num_members < 1:
      raise ValueError(f"method {self.name!r}: num_members must be >= 1, got {self.num_members}")
    if self.prediction not in PREDICTIONS:
      raise ValueError(f"method {self.name!r}: prediction must be one of {PREDICTIONS}, "
                       f"got {self.prediction!r}")

  def deployed_probs(self, member_probs):
    """Member probabilities (R, M, N, K) -> deployed probabilities (R, N, K)."""
    if self.prediction == "member0":
      return member_probs[:, 0]
    return jnp.mean(member_probs, axis=1)
