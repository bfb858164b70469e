"""What a method is: members, how the deployed prediction is formed, and a pure loss.

A method never touches optimizers, data or devices. The trainer applies every member of a run
to the run's batch and hands the stacked logits to `Method.loss`; the loss returns a scalar
and a dict of scalar metrics for logging. Runs never see each other: the trainer maps the
loss over the run axis and sums, so the gradient of run r is the gradient of run r's loss.

Which batch a member sees is declared by `member_data`: "shared" (every member of a run sees
the run's batch; the coupled methods need it, their losses compare members on the same
examples) or "independent" (each member has its own data seed and order, like a separately
trained model: deep ensembles). Metrics named "coef/<name>" are the coefficients the loss
applied at that step (schedules included), so logs show what the trainer really used.
"""

import dataclasses
import functools
from typing import Callable, Mapping, Optional, Tuple

import chex
import jax
import jax.numpy as jnp

# (logits (M, B, K), or (M, B, E, K) for a BatchEnsemble model, labels, step (), extra)
#   -> (scalar loss, {name: scalar}); labels are (B,) for member_data "shared" and (M, B) for
#   "independent" (`member_labels` gives (M, B)).
# `extra` holds what the trainer computes for the method, per run (see Method):
#   "peer_logits" (M, B, K): the members' stale copies (stale_refresh_steps > 0), no gradient;
#   "teacher_logits" (Mt, B, K): the frozen stage-1 teacher on the batch (teacher set);
#   "aux_logits" (M, B, K) and "aux_teacher_logits" (Mt, B, K): student (with gradient) and
#   teacher on the inputs made by `input_transform`.
LossFn = Callable[..., Tuple[jax.Array, Mapping[str, jax.Array]]]
# (x (B, ...), teacher_logits_fn: x -> (Mt, B, K), rng, x_range) -> perturbed x (B, ...);
# x_range = (lo, hi), the model inputs of pixel values 0 and 1 (methods/perturb.py).
InputTransform = Callable[..., jax.Array]
# (study model name, model kwargs) -> (name, kwargs) of the architecture a method trains.
ModelSpec = Callable[[str, dict], Tuple[str, dict]]

PREDICTIONS = ("member0", "ensemble_mean")
MEMBER_DATA = ("shared", "independent")


def member_labels(labels, num_members: int):
  """Labels of each member, (M, B): per-member labels as given, shared (B,) broadcast."""
  labels = jnp.asarray(labels)
  if labels.ndim == 2:
    return labels
  return jnp.broadcast_to(labels, (num_members,) + labels.shape)


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
    training_cost: training compute of this stage in multiples of one model (the study adds
      the teacher's cost for two-stage methods).
    inference_cost: inference compute in multiples of one model.
    teacher: name of the method config whose trained members are this method's frozen
      teacher (stage 1 of ensemble distillation and self-distillation), or None.
    stale_refresh_steps: if > 0, the trainer keeps a copy of the members refreshed every that
      many steps and passes its logits as extra["peer_logits"] (Anil et al. 2018).
    input_transform: optional perturbation of the inputs that needs the teacher (ODS).
    init_salt: folded into the init keys, so a student starts from a fresh seed rather than
      from its teacher's initialisation.
    student_model: if set, maps the study's model (name, kwargs) to the one this method trains
      (the BatchEnsemble student); its teacher keeps the study's model.
    model_ensemble_size: E > 1 when one model holds E members (BatchEnsemble): its logits are
      (B, E, K), the loss sees (M, B, E, K), and the deployed prediction first averages the
      E members' probabilities.
    member_data: "shared" (one batch per run, seen by every member) or "independent" (each
      member its own data seed: the trainer feeds (R*M) streams and member m of run r gets
      stream r*M + m; the loss receives logits of different examples per member and labels
      (M, B)). Independent members take no teacher, stale peers or input transform.

  `loss` is wrapped at construction with chex shape checks of its boundary (logits, labels,
  step, the teacher's logits, a scalar result): they run when the step is traced, not per step.
  """
  name: str
  num_members: int
  loss: LossFn
  prediction: str = "member0"
  training_cost: float = 1.0
  inference_cost: float = 1.0
  teacher: Optional[str] = None
  stale_refresh_steps: int = 0
  input_transform: Optional[InputTransform] = None
  init_salt: int = 0
  student_model: Optional[ModelSpec] = None
  model_ensemble_size: int = 1
  member_data: str = "shared"

  @property
  def streams_per_run(self) -> int:
    """Data streams the trainer feeds each run: M for independent members, else 1."""
    return self.num_members if self.member_data == "independent" else 1

  def __post_init__(self):
    if self.num_members < 1:
      raise ValueError(f"method {self.name!r}: num_members must be >= 1, got {self.num_members}")
    if self.prediction not in PREDICTIONS:
      raise ValueError(f"method {self.name!r}: prediction must be one of {PREDICTIONS}, "
                       f"got {self.prediction!r}")
    if self.input_transform is not None and self.teacher is None:
      raise ValueError(f"method {self.name!r}: an input transform needs a teacher")
    if self.model_ensemble_size < 1:
      raise ValueError(f"method {self.name!r}: model_ensemble_size must be >= 1, "
                       f"got {self.model_ensemble_size}")
    # Re-wrapped from the raw loss each time, so dataclasses.replace keeps the checks current.
    raw_loss = getattr(self.loss, "unchecked", self.loss)
    object.__setattr__(self, "loss", _checked_loss(raw_loss, self.num_members,
                                                   self.model_ensemble_size))
    if self.member_data not in MEMBER_DATA:
      raise ValueError(f"method {self.name!r}: member_data must be one of {MEMBER_DATA}, "
                       f"got {self.member_data!r}")
    if self.streams_per_run > 1 and (self.teacher is not None or self.stale_refresh_steps
                                     or self.input_transform is not None):
      raise ValueError(f"method {self.name!r}: independent member data does not combine with "
                       f"a teacher, stale peers or an input transform (they need one batch)")

  def deployed_probs(self, member_probs):
    """Member probabilities (R, M, N, K) -> deployed probabilities (R, N, K).

    With model_ensemble_size E > 1 the input is (R, M, N, E, K) and each model's prediction is
    the mean of its E members' probabilities (BatchEnsemble's deployed prediction).
    """
    if self.model_ensemble_size > 1:
      chex.assert_rank(member_probs, 5)
      member_probs = jnp.mean(member_probs, axis=3)
    chex.assert_rank(member_probs, 4)
    if self.prediction == "member0":
      return member_probs[:, 0]
    return jnp.mean(member_probs, axis=1)


def _checked_loss(loss: LossFn, num_members: int, model_ensemble_size: int) -> LossFn:
  """`loss` with chex checks of the contract above: logits (M, B[, E], K), labels (B,) or (M, B), a
  scalar step, teacher logits (Mt, B, K) on the same batch, a scalar loss and scalar metrics.

  Shapes are static, so under jit the checks cost only tracing time.
  """
  @functools.wraps(loss)
  def checked(logits, labels, step, extra=None):
    chex.assert_rank(labels, {1, 2})  # (B,) shared, or (M, B) with independent member data.
    if labels.ndim == 2:
      chex.assert_axis_dimension(labels, 0, num_members)
    heads = (model_ensemble_size,) if model_ensemble_size > 1 else ()
    chex.assert_shape(logits, (num_members, labels.shape[-1]) + heads + (None,))
    chex.assert_rank(step, 0)
    for key in ("teacher_logits", "aux_teacher_logits"):
      if extra and key in extra:
        chex.assert_shape(extra[key], (None, labels.shape[-1], logits.shape[-1]))
    value, metrics = loss(logits, labels, step, extra)
    chex.assert_rank(value, 0)
    chex.assert_rank(list(metrics.values()), 0)
    return value, metrics

  checked.unchecked = loss
  return checked
