"""Distillation from a frozen, separately trained teacher (the second stage of a study).

kind "distill": the student (one model) minimises
    (1 - a) CE(y, p_s) + a T^2 KL(p_t^T || p_s^T)                       (Hinton et al. 2015)
where p^T = softmax(z / T) and the teacher distribution is the mean of the teacher members'
tempered probabilities. `cfg.teacher` names the method config of the teacher:
  - an `ensemble` teacher gives ensemble distillation (training cost M + 1);
  - a `baseline` teacher with a fresh student seed gives self-distillation (Allen-Zhu & Li
    2020: a new model of the same architecture trained on labels and the first model's
    outputs);
  - `perturbation` "ods" / "ods_confidence" / "gaussian" computes the KD term on perturbed
    inputs (Nam et al. 2021, diversity-seeking distillation) while CE stays on clean inputs.
    As in the authors' code (methods/perturb.py), the ODS softmax uses the KD temperature,
    `step_size` is eta and `noise_std` is sigma, both in 1/255 pixel levels (default 1, the
    authors' default), and the teacher's targets are computed on the perturbed inputs.

cfg keys: teacher, alpha (default 0.5), temperature (default 1), perturbation (default
"none"), step_size, noise_std, init_salt (default 1). The student is one model, so the
data order question (Method.member_data) does not arise.
"""

import functools

import jax
import jax.numpy as jnp

from churn_jax.core import losses, schedules
from churn_jax.methods import base, perturb

PERTURBATIONS = ("none", "ods", "ods_confidence", "gaussian")


def teacher_probs(teacher_logits, temperature):
  """Mean over teacher members of softmax(z / T): (Mt, B, K) -> (B, K)."""
  return jnp.mean(jax.nn.softmax(teacher_logits / temperature, axis=-1), axis=0)


def kd_term(student_logits, teacher_logits, temperature):
  """T^2 KL(p_t^T || p_s^T), mean over the batch; no gradient reaches the teacher."""
  target = jax.lax.stop_gradient(teacher_probs(teacher_logits, temperature))
  log_s = jax.nn.log_softmax(student_logits / temperature)
  log_t = jnp.log(jnp.clip(target, 1e-12))
  return temperature ** 2 * jnp.mean(jnp.sum(target * (log_t - log_s), axis=-1))


def _transform(cfg, perturbation, temperature):
  if perturbation == "none":
    return None
  if perturbation == "gaussian":
    return functools.partial(perturb.gaussian, noise_std=float(cfg.get("noise_std", 1.0)))
  return functools.partial(perturb.ods, step_size=float(cfg.get("step_size", 1.0)),
                           temperature=temperature,
                           confidence_scaled=perturbation == "ods_confidence")


def build(name, cfg, num_steps) -> base.Method:
  teacher = cfg.get("teacher")
  if not teacher:
    raise ValueError(f"method {name!r}: distillation needs `teacher`, the name of a method config")
  perturbation = cfg.get("perturbation", "none")
  if perturbation not in PERTURBATIONS:
    raise ValueError(f"method {name!r}: unknown perturbation {perturbation!r}; known: "
                     f"{', '.join(PERTURBATIONS)}")
  alpha_fn = schedules.from_config(cfg.get("alpha", 0.5), num_steps)
  temperature = float(cfg.get("temperature", 1.0))
  transform = _transform(cfg, perturbation, temperature)

  def loss(logits, labels, step, extra):
    alpha = alpha_fn(step)
    ce = losses.cross_entropy(logits[0], labels)
    if transform is None:
      kd = kd_term(logits[0], extra["teacher_logits"], temperature)
    else:
      kd = kd_term(extra["aux_logits"][0], extra["aux_teacher_logits"], temperature)
    return (1.0 - alpha) * ce + alpha * kd, {"ce": ce, "kd": kd, "coef/alpha": alpha}

  # Perturbed inputs cost one more student forward/backward and a teacher gradient.
  cost = 1.0 if transform is None else 2.0
  return base.Method(name=name, num_members=1, loss=loss, training_cost=cost, teacher=teacher,
                     input_transform=transform, init_salt=int(cfg.get("init_salt", 1)))
