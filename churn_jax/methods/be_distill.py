"""A BatchEnsemble student distilled member to member from a deep ensemble (Nam et al. 2021).

kind "be_distill": the student is one BatchEnsemble model (Wen et al. 2020) with E members
(models/batchensemble.py) and the teacher a deep ensemble of E members (`cfg.teacher`, e.g.
"ensemble4" for Nam et al.'s BE-4 students). Member i of the student learns from member i of
the teacher only:

    L = (1 - a) 1/E sum_i CE(y, p_s_i) + a 1/E sum_i T^2 KL(p_t_i^T || p_s_i^T)

the mean over members as in the authors' code (cs-giung/giung2, train_student.py: the batch is
tiled E times and both terms are batch means over the E*B rows).

How it fits the (run, member) stack: the student is ONE set of parameters, so it is M = 1 in
the stack, and its model emits (B, E, K). `student_model` swaps the study's model for its
BatchEnsemble variant (e.g. wrn28_10 -> be_wrn28_10; the teacher keeps the study's model);
`model_ensemble_size = E` tells the loss boundary and `deployed_probs` about the E axis: the
loss sees (1, B, E, K), and the deployed prediction is the mean of the E members'
probabilities. The trainer is the same one; it only builds the model the method names.

`perturbation` ("ods", "ods_confidence", "gaussian") computes the KD term on perturbed inputs
as in kind "distill" (Nam et al. distil BE students with ODS); CE stays on clean inputs.
cfg keys: teacher, ensemble_size (default 4, must equal the teacher's members), alpha,
temperature, perturbation (+ its keys, see distill.py), init_salt.
"""

import jax
import jax.numpy as jnp

from churn_jax import models
from churn_jax.core import losses, schedules
from churn_jax.methods import base, distill


def member_to_member_loss(student_logits, labels, teacher_logits, alpha, temperature,
                          kd_student_logits=None):
  """(loss, metrics) for student logits (B, E, K) and teacher logits (E, B, K).

  `kd_student_logits` (B, E, K): the student on the teacher's inputs when those differ
  (perturbed inputs); defaults to `student_logits`.
  """
  size = student_logits.shape[1]
  if teacher_logits.shape[0] != size:
    raise ValueError(f"be_distill: the student has {size} members but the teacher "
                     f"{teacher_logits.shape[0]}; member i learns from teacher member i")
  per_member = jnp.swapaxes(student_logits, 0, 1)  # (E, B, K)
  kd_members = per_member if kd_student_logits is None else jnp.swapaxes(kd_student_logits, 0, 1)
  ce = jnp.mean(jax.vmap(losses.cross_entropy, in_axes=(0, None))(per_member, labels))
  kd = jnp.mean(jax.vmap(lambda s, t: distill.kd_term(s, t[None], temperature))(
      kd_members, teacher_logits))
  return (1.0 - alpha) * ce + alpha * kd, {"ce": ce, "kd": kd, "alpha": alpha}


def build(name, cfg, num_steps) -> base.Method:
  teacher = cfg.get("teacher")
  if not teacher:
    raise ValueError(f"method {name!r}: be_distill needs `teacher`, a deep-ensemble method "
                     f"config with ensemble_size members")
  size = int(cfg.get("ensemble_size", 4))
  if size < 2:
    raise ValueError(f"method {name!r}: ensemble_size must be >= 2, got {size}")
  perturbation = cfg.get("perturbation", "none")
  if perturbation not in distill.PERTURBATIONS:
    raise ValueError(f"method {name!r}: unknown perturbation {perturbation!r}; known: "
                     f"{', '.join(distill.PERTURBATIONS)}")
  alpha_fn = schedules.from_config(cfg.get("alpha", 0.5), num_steps)
  temperature = float(cfg.get("temperature", 1.0))
  transform = distill._transform(cfg, perturbation, temperature)  # pylint: disable=protected-access

  def loss(logits, labels, step, extra):
    if transform is None:
      return member_to_member_loss(logits[0], labels, extra["teacher_logits"], alpha_fn(step),
                                   temperature)
    return member_to_member_loss(logits[0], labels, extra["aux_teacher_logits"],
                                 alpha_fn(step), temperature, extra["aux_logits"][0])

  def student_model(model_name, model_kwargs):
    return models.batch_ensemble_variant(model_name), dict(model_kwargs, ensemble_size=size)

  # Compute: the tiled batch runs E members' forward/backward (2E with perturbed inputs);
  # parameters are about one model's.
  cost = float(size) if transform is None else 2.0 * size
  return base.Method(name=name, num_members=1, loss=loss, training_cost=cost,
                     inference_cost=float(size), teacher=teacher, input_transform=transform,
                     init_salt=int(cfg.get("init_salt", 1)), student_model=student_model,
                     model_ensemble_size=size)
