"""Input perturbations for diversity-seeking distillation (Nam et al. 2021), as the authors'
code defines them (cs-giung/giung2, projects/Diversity-Matters/scripts/train_student.py,
`kd_method_name` "ods_l2", "c_ods_l2" and "gaussian").

Pixel units. The authors perturb images with pixels in [0, 1] (their models normalise inside)
and clip the result to [0, 1]. Our models see normalised inputs x, so every transform takes
`x_range = (lo, hi)`: the model-input values of pixel 0 and pixel 1, arrays that broadcast
against one example (per channel for images: lo = -mean/std, hi = (1 - mean)/std). A pixel
p in [0, 1] is x = lo + (hi - lo) * p; perturbations are made in p and clipped to [0, 1],
which is exactly the authors' computation seen through the normalisation. `input_range`
says what the units are for each data source: for TFDS images the pixels; for data that are
not images (MNIST-1D, an npz) the "pixel" is the training set's range, so [0, 1] spans
[min x_train, max x_train] and eta / 255 is a fraction of that range. x_range None means x
is in pixel units already and nothing is clipped.

ODS (Tashiro et al. 2020, as used by Nam et al.): pick one teacher member m at random, draw
w ~ U(-1, 1)^K per example, let g = d/dp sum_k w_k softmax(z_m(x) / T)_k with T the KD
temperature, and move every example by (eta / 255) * sqrt(D) * g / ||g||_2 (D = the number
of input values of one example), so its RMS change per value is eta / 255 pixel levels.
Confidence-scaled ODS multiplies the step by the chosen teacher's max_k softmax(z_m(x)/T)_k:
confident inputs move more. The Gaussian baseline adds sigma / 255 * N(0, I) pixel levels.
"""

import jax
import jax.numpy as jnp
import numpy as np

PIXEL_LEVELS = 255.0  # eta and sigma are in 1/255 of the pixel range, as in the authors' code.


def input_range(dataset):
  """(lo, hi): the model inputs of pixel values 0 and 1 of a data source (module docstring).

  TFDS images (a source with `spec.mean`/`spec.std`): per channel, from the normalisation
  the source applies. In-memory data: the min and max of the training inputs.
  """
  spec = getattr(dataset, "spec", None)
  if spec is not None and hasattr(spec, "mean"):
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    return -mean / std, (1.0 - mean) / std
  x = getattr(dataset, "x_train", None)
  if x is None:  # A source that declares neither: inputs taken as pixels, nothing clipped.
    return None
  return np.float32(x.min()), np.float32(x.max())


def _scale(x, x_range):
  """(lo, hi - lo) broadcast against x (B, ...); (0, 1) when x_range is None."""
  if x_range is None:
    return jnp.zeros((), x.dtype), jnp.ones((), x.dtype)
  lo, hi = (jnp.asarray(v, x.dtype) for v in x_range)
  return lo, hi - lo


def _to_inputs(x, p, x_range):
  """Inputs of pixels p, clipped to the pixel range [0, 1] (no clip without a range)."""
  lo, width = _scale(x, x_range)
  if x_range is not None:
    p = jnp.clip(p, 0.0, 1.0)
  return lo + width * p


def ods(x, teacher_logits_fn, rng, x_range, *, step_size: float, temperature: float,
        confidence_scaled: bool = False):
  """x' = x + (eta/255) sqrt(D) s g/||g||_2 in pixel units, clipped (module docstring).

  Args:
    x: (B, ...) model inputs.
    teacher_logits_fn: x -> (Mt, B, K) logits of the frozen teacher members.
    rng: key for the teacher member and the random output direction w.
    x_range: (lo, hi), the model inputs of pixels 0 and 1, or None.
    step_size: eta in 1/255 pixel levels (the authors' `kd_method_step_size`, default 1).
    temperature: the KD temperature (the authors use it for the ODS softmax too).
    confidence_scaled: s = max_k softmax(z_m(x)/T)_k (c-ODS); else s = 1.
  Returns:
    The perturbed inputs, with no gradient path back.
  """
  lo, width = _scale(x, x_range)
  p = (x - lo) / width
  num_teachers = teacher_logits_fn(x).shape[0]
  k_member, k_w = jax.random.split(rng)
  m = jax.random.randint(k_member, (), 0, num_teachers)

  def probs_of(p):
    return jax.nn.softmax(teacher_logits_fn(lo + width * p)[m] / temperature, axis=-1)

  probs = probs_of(p)
  w = jax.random.uniform(k_w, probs.shape, minval=-1.0, maxval=1.0)
  g = jax.grad(lambda p: jnp.sum(w * probs_of(p)))(p)
  flat = g.reshape(g.shape[0], -1)
  dim = flat.shape[1]
  # Per-example L2 normalisation (torch F.normalize: eps 1e-12 on the norm).
  unit = flat / jnp.maximum(jnp.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
  step = (step_size / PIXEL_LEVELS) * np.sqrt(dim) * unit
  if confidence_scaled:
    step = step * jnp.max(probs, axis=-1, keepdims=True)
  return jax.lax.stop_gradient(_to_inputs(x, p + step.reshape(p.shape), x_range))


def gaussian(x, teacher_logits_fn, rng, x_range, *, noise_std: float):
  """The baseline: x' = x + (sigma/255) N(0, I) in pixel units, clipped; sigma = noise_std."""
  del teacher_logits_fn
  lo, width = _scale(x, x_range)
  p = (x - lo) / width + (noise_std / PIXEL_LEVELS) * jax.random.normal(rng, x.shape, x.dtype)
  return jax.lax.stop_gradient(_to_inputs(x, p, x_range))
