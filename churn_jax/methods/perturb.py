"""Input perturbations for diversity-seeking distillation (Nam et al. 2021).

Output-diversified sampling (ODS, Tashiro et al. 2020, as used by Nam et al. 2021): pick one
teacher member m at random, draw w ~ U(-1, 1)^K per example, and move every input along the
normalised gradient of sum_k w_k softmax(z_m(x) / T)_k, so the student sees inputs where the
teacher's outputs change in a random direction of the output space (where members disagree).
"""

import jax
import jax.numpy as jnp


def _clip(x, x_range):
  return x if x_range is None else jnp.clip(x, x_range[0], x_range[1])


def _per_example_normalise(g):
  norm = jnp.sqrt(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1))
  return g / (norm.reshape((-1,) + (1,) * (g.ndim - 1)) + 1e-12)


def ods(x, teacher_logits_fn, rng, x_range, *, step_size: float, temperature: float = 1.0,
        confidence_scaled: bool = False):
  """x' = clip(x + step_size * s * g / ||g||), g = d/dx sum_k w_k softmax(z_m(x)/T)_k.

  With `confidence_scaled`, s = 1 - max_k p_teacher(x) per example (our reading of the
  paper's confidence-scaled variant: confident inputs move less); otherwise s = 1.
  Returns the perturbed inputs with no gradient path back to the student.
  """
  teacher_logits = teacher_logits_fn(x)  # (Mt, B, K)
  num_teachers, batch, num_classes = teacher_logits.shape
  k_member, k_w = jax.random.split(rng)
  m = jax.random.randint(k_member, (), 0, num_teachers)
  w = jax.random.uniform(k_w, (batch, num_classes), minval=-1.0, maxval=1.0)

  def objective(x):
    probs = jax.nn.softmax(teacher_logits_fn(x)[m] / temperature)
    return jnp.sum(w * probs)

  g = _per_example_normalise(jax.grad(objective)(x))
  scale = 1.0
  if confidence_scaled:
    conf = jnp.max(jax.nn.softmax(teacher_logits[m]), axis=-1)
    scale = (1.0 - conf).reshape((-1,) + (1,) * (x.ndim - 1))
  return jax.lax.stop_gradient(_clip(x + step_size * scale * g, x_range))


def gaussian(x, teacher_logits_fn, rng, x_range, *, noise_std: float):
  """The baseline perturbation: x' = clip(x + noise_std * N(0, I))."""
  del teacher_logits_fn
  return _clip(x + noise_std * jax.random.normal(rng, x.shape, x.dtype), x_range)
