"""Trainer support for methods that need more than their logits: stale peers, frozen
teachers (ensemble and self-distillation) and perturbed inputs (ODS)."""

import os
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from churn_jax import methods, train
from churn_jax.methods import distill, perturb
from tests import testing


def leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def extended_config(**kw):
  config = testing.tiny_config(**kw)
  mc = config.method_configs
  mc.ensemble = dict(kind="ensemble", num_members=2)
  mc.ens_distill = dict(kind="distill", teacher="ensemble", alpha=0.5, temperature=2.0)
  mc.no_kd = dict(kind="distill", teacher="baseline", alpha=0.0, init_salt=0)
  mc.ods = dict(kind="distill", teacher="ensemble", perturbation="ods", step_size=0.5)
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


class PerturbationTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.w = jax.random.normal(jax.random.PRNGKey(0), (3, 6, 4))  # 3 linear "teachers".
    self.logits_fn = lambda x: jnp.einsum("bd,mdk->mbk", x, self.w)
    self.x = jax.random.normal(jax.random.PRNGKey(1), (5, 6))

  def test_ods_moves_each_example_by_step_size_and_stays_in_range(self):
    x2 = perturb.ods(self.x, self.logits_fn, jax.random.PRNGKey(2), None, step_size=0.3)
    np.testing.assert_allclose(np.linalg.norm(x2 - self.x, axis=1), 0.3, rtol=1e-4)
    clipped = perturb.ods(self.x, self.logits_fn, jax.random.PRNGKey(2), (-0.5, 0.5),
                          step_size=0.3)
    self.assertLessEqual(float(jnp.abs(clipped).max()), 0.5)

  def test_ods_direction_increases_the_random_projection(self):
    rng = jax.random.PRNGKey(3)
    x2 = perturb.ods(self.x, self.logits_fn, rng, None, step_size=1e-3)
    k_member, k_w = jax.random.split(rng)
    m = jax.random.randint(k_member, (), 0, 3)
    w = jax.random.uniform(k_w, (5, 4), minval=-1.0, maxval=1.0)
    objective = lambda x: jnp.sum(w * jax.nn.softmax(self.logits_fn(x)[m]), axis=-1)
    self.assertTrue(bool(jnp.all(objective(x2) > objective(self.x))))

  def test_confidence_scaled_moves_confident_examples_less(self):
    x2 = perturb.ods(self.x, self.logits_fn, jax.random.PRNGKey(2), None, step_size=0.3,
                     confidence_scaled=True)
    self.assertTrue(bool(jnp.all(jnp.linalg.norm(x2 - self.x, axis=1) < 0.3)))

  def test_gaussian_baseline(self):
    x = jnp.zeros((2000, 6))
    x2 = perturb.gaussian(x, None, jax.random.PRNGKey(0), None, noise_std=0.2)
    self.assertAlmostEqual(float(jnp.std(x2)), 0.2, delta=0.01)

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
