"""Trainer support for methods that need more than their logits: stale peers, frozen
teachers (ensemble and self-distillation) and perturbed inputs (ODS)."""

import os
import tempfile
import types

from absl.testing import absltest, parameterized
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from churn_jax import methods
from churn_jax.methods import distill, perturb
from churn_jax.study import train
from tests import testing


def leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def extended_config(**kw):
  config = testing.tiny_config(**kw)
  mc = config.method_configs
  mc.ensemble = dict(kind="ensemble", num_members=2)
  mc.ens_distill = dict(kind="distill", teacher="ensemble", alpha=0.5, temperature=2.0)
  mc.no_kd = dict(kind="distill", teacher="baseline", alpha=0.0, init_salt=0)
  mc.ods = dict(kind="distill", teacher="ensemble", perturbation="ods", step_size=1.0)
  mc.anil = dict(kind="codistill_ce", beta=1.0, stale_refresh_steps=2)
  mc.anil_never = dict(kind="codistill_ce", beta=1.0, stale_refresh_steps=1000)
  return config


class StalePeersTest(absltest.TestCase):

  def test_stale_copies_refresh_every_k_steps(self):
    config = extended_config(num_runs=2, num_steps=4)
    ds = testing.tiny_dataset()
    build = lambda n: methods.build(n, config.method_configs[n], 4)
    refreshed = train.train_method(config, ds, build("anil"))  # Refreshed at steps 2 and 4.
    for stale, live in zip(leaves(refreshed.state.stale["params"]),
                           leaves(refreshed.state.params)):
      np.testing.assert_array_equal(stale, live)
    never = train.train_method(config, ds, build("anil_never"))  # Still the initial weights.
    config0 = extended_config(num_runs=2, num_steps=1)
    config0.lr.base = 1e-30  # One step that barely moves: the stale copy is the init.
    first = train.train_method(config0, ds, methods.build("anil_never",
                                                          config.method_configs.anil_never, 1))
    for stale, start in zip(leaves(never.state.stale["params"]),
                            leaves(first.state.stale["params"])):
      np.testing.assert_array_equal(stale, start)
    self.assertFalse(all(np.array_equal(a, b) for a, b in
                         zip(leaves(never.state.stale["params"]), leaves(never.state.params))))


class TeacherTest(absltest.TestCase):

  def test_zero_weight_distillation_equals_the_baseline(self):
    config = extended_config(num_runs=2, num_steps=5)
    ds = testing.tiny_dataset()
    teacher = train.train_method(config, ds, methods.build("ensemble", config.method_configs.ensemble, 5))
    student = train.train_method(config, ds, methods.build("no_kd", config.method_configs.no_kd, 5),
                                 teacher=teacher.state)
    base = train.train_method(config, ds, methods.build("baseline", config.method_configs.baseline, 5))
    for a, b in zip(leaves(student.state.params), leaves(base.state.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  def test_study_trains_teacher_first_and_reuses_it_from_its_checkpoint(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = extended_config(num_runs=2, num_steps=5, methods="ens_distill")
      config.data.cache_dir = tmp
      fresh = train.train_and_evaluate(config, os.path.join(tmp, "fresh"))
      self.assertEqual(list(fresh["methods"]), ["ensemble", "ens_distill"])
      self.assertEqual(fresh["methods"]["ens_distill"]["training_cost"], 3.0)
      self.assertEqual(fresh["methods"]["ensemble"]["inference_cost"], 2.0)
      # Stage 1 in one process, stage 2 in another: the teacher comes from its checkpoint.
      staged = os.path.join(tmp, "staged")
      config.methods = "ensemble"
      train.train_and_evaluate(config, staged)
      config.methods = "ens_distill"
      again = train.train_and_evaluate(config, staged)
      self.assertEqual(again["methods"]["ens_distill"], fresh["methods"]["ens_distill"])


def np_ods(x, w_teachers, m, w, lo, hi, eta, temperature, confidence_scaled):
  """Nam et al.'s ODS step by hand (numpy, float64) for linear teachers z = flat(x) @ W_m."""
  x, lo, hi = (np.asarray(a, np.float64) for a in (x, lo, hi))
  batch = x.shape[0]
  p_pix = (x - lo) / (hi - lo)
  z = x.reshape(batch, -1) @ np.asarray(w_teachers[m], np.float64)
  e = np.exp(z / temperature - (z / temperature).max(-1, keepdims=True))
  probs = e / e.sum(-1, keepdims=True)
  # d/dz sum_k w_k softmax(z/T)_k = p * (w - <p, w>) / T; then z = x W, x = lo + (hi-lo) p.
  g_z = probs * (w - np.sum(probs * w, -1, keepdims=True)) / temperature
  g_x = (g_z @ np.asarray(w_teachers[m], np.float64).T).reshape(x.shape)
  g_pix = g_x * (hi - lo)
  flat = g_pix.reshape(batch, -1)
  dim = flat.shape[1]
  step = eta / 255.0 * np.sqrt(dim) * flat / np.linalg.norm(flat, axis=1, keepdims=True)
  if confidence_scaled:
    step = step * probs.max(-1, keepdims=True)
  return lo + (hi - lo) * np.clip(p_pix + step.reshape(x.shape), 0.0, 1.0)


class PerturbationTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    # Images (B=5, 2, 2, 3) normalised per channel like a TFDS source; 3 linear "teachers".
    self.mean, self.std = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])
    self.lo, self.hi = -self.mean / self.std, (1 - self.mean) / self.std
    pixels = np.random.default_rng(0).uniform(0.2, 0.8, size=(5, 2, 2, 3))
    self.x = jnp.asarray((pixels - self.mean) / self.std, jnp.float32)
    self.w = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (3, 12, 4)))
    self.logits_fn = lambda x: jnp.einsum("bd,mdk->mbk", x.reshape(x.shape[0], -1), self.w)

  def draws(self, rng):
    """The teacher member and output direction ods() draws from `rng`."""
    k_member, k_w = jax.random.split(rng)
    return (int(jax.random.randint(k_member, (), 0, 3)),
            np.asarray(jax.random.uniform(k_w, (5, 4), minval=-1.0, maxval=1.0), np.float64))

  @parameterized.product(confidence_scaled=(False, True), eta=(2.0, 200.0))
  def test_ods_matches_the_hand_computation(self, confidence_scaled, eta):
    rng = jax.random.PRNGKey(7)
    out = perturb.ods(self.x, self.logits_fn, rng, (self.lo, self.hi), step_size=eta,
                      temperature=3.0, confidence_scaled=confidence_scaled)
    m, w = self.draws(rng)
    ref = np_ods(self.x, self.w, m, w, self.lo, self.hi, eta, 3.0, confidence_scaled)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    pixels = (np.asarray(out) - self.lo) / (self.hi - self.lo)
    self.assertTrue(np.all((pixels > -1e-5) & (pixels < 1 + 1e-5)))  # Clipped to [0, 1].
    if eta == 200.0:
      self.assertTrue(np.any(np.isclose(pixels, 0.0, atol=1e-5) | np.isclose(pixels, 1.0,
                                                                               atol=1e-5)))

  def test_ods_step_length_in_pixels_and_confidence_scaling(self):
    rng, eta, temp = jax.random.PRNGKey(3), 2.0, 2.0
    moved = lambda out: np.linalg.norm(
        ((np.asarray(out) - self.x) / (self.hi - self.lo)).reshape(5, -1), axis=1)
    plain = perturb.ods(self.x, self.logits_fn, rng, (self.lo, self.hi), step_size=eta,
                        temperature=temp)
    # Unclipped here: every example moves (eta/255) sqrt(D) in pixel units (D = 12).
    np.testing.assert_allclose(moved(plain), eta / 255 * np.sqrt(12), rtol=1e-3)
    scaled = perturb.ods(self.x, self.logits_fn, rng, (self.lo, self.hi), step_size=eta,
                         temperature=temp, confidence_scaled=True)
    m, _ = self.draws(rng)
    conf = np.asarray(jax.nn.softmax(self.logits_fn(self.x)[m] / temp)).max(-1)
    # Scaled by the chosen teacher's max probability at the KD temperature: confident
    # examples move more (the authors' c_ods_l2), never by 1 - max p.
    np.testing.assert_allclose(moved(scaled), eta / 255 * np.sqrt(12) * conf, rtol=1e-3)
    order = np.argsort(conf)
    self.assertTrue(np.all(np.diff(moved(scaled)[order]) > 0))

  def test_distill_uses_the_kd_temperature_for_ods(self):
    cfg = ml_collections.ConfigDict(dict(kind="distill", teacher="ensemble", temperature=4.0,
                                         perturbation="ods_confidence", step_size=3.0))
    method = methods.build("ods", cfg, 10)
    rng = jax.random.PRNGKey(5)
    out = method.input_transform(self.x, self.logits_fn, rng, (self.lo, self.hi))
    m, w = self.draws(rng)
    np.testing.assert_allclose(out, np_ods(self.x, self.w, m, w, self.lo, self.hi, 3.0, 4.0,
                                           True), rtol=1e-4, atol=1e-4)

  def test_ods_direction_increases_the_random_projection(self):
    rng = jax.random.PRNGKey(3)
    x2 = perturb.ods(self.x, self.logits_fn, rng, None, step_size=1.0, temperature=1.0)
    m, w = self.draws(rng)
    objective = lambda x: jnp.sum(w * jax.nn.softmax(self.logits_fn(x)[m]), axis=-1)
    self.assertTrue(bool(jnp.all(objective(x2) > objective(self.x))))

  def test_gaussian_baseline_in_pixel_units_and_clipped(self):
    x = jnp.zeros((4000, 3))  # Pixel 0.5 with lo = -1, hi = 1: one pixel is 2 input units.
    x2 = perturb.gaussian(x, None, jax.random.PRNGKey(0), (-1.0, 1.0), noise_std=10.0)
    self.assertAlmostEqual(float(jnp.std(x2)), 2 * 10.0 / 255, delta=0.003)
    big = perturb.gaussian(x, None, jax.random.PRNGKey(0), (-1.0, 1.0), noise_std=255.0)
    self.assertEqual((float(big.min()), float(big.max())), (-1.0, 1.0))

  def test_input_range(self):
    source = types.SimpleNamespace(spec=types.SimpleNamespace(mean=self.mean, std=self.std))
    lo, hi = perturb.input_range(source)
    np.testing.assert_allclose(lo, self.lo, rtol=1e-6)
    np.testing.assert_allclose(hi, self.hi, rtol=1e-6)
    ds = testing.tiny_dataset()
    self.assertEqual(perturb.input_range(ds), (ds.x_train.min(), ds.x_train.max()))

  def test_kd_term_matches_numpy_and_ignores_teacher_gradient(self):
    s = jax.random.normal(jax.random.PRNGKey(4), (5, 4))
    t = jax.random.normal(jax.random.PRNGKey(5), (2, 5, 4))
    temp = 2.0
    pt = np.mean(np.asarray(jax.nn.softmax(t / temp)), axis=0)
    ls = np.asarray(jax.nn.log_softmax(s / temp))
    ref = temp ** 2 * np.mean(np.sum(pt * (np.log(pt) - ls), axis=-1))
    np.testing.assert_allclose(distill.kd_term(s, t, temp), ref, rtol=1e-5)
    g = jax.grad(lambda t: distill.kd_term(s, t, temp))(t)
    np.testing.assert_array_equal(g, 0.0)

  def test_ods_distillation_trains(self):
    config = extended_config(num_runs=2, num_steps=3)
    ds = testing.tiny_dataset()
    teacher = train.train_method(config, ds, methods.build("ensemble", config.method_configs.ensemble, 3))
    out = train.train_method(config, ds, methods.build("ods", config.method_configs.ods, 3),
                             teacher=teacher.state)
    self.assertTrue(all(np.isfinite(x).all() for x in leaves(out.state.params)))
    self.assertEqual(out.member_probs.shape[:2], (2, 1))


if __name__ == "__main__":
  absltest.main()
