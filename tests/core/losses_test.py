"""Losses against independent numpy computations, and their gradients.

The value checks run as chex variants, with and without jit: the losses are used inside the
jitted step, and eagerly by tests and tools. The gradient checks run jitted: eagerly, each
compiled one program per primitive and shape (a test's CPU time is nearly all compiling).
"""

from absl.testing import absltest, parameterized
import chex
import jax
from jax import test_util as jtu
import jax.numpy as jnp
import numpy as np
import optax

from churn_jax.core import losses
from tests import fast_jit


def np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_kl(p, q):
  return np.sum(p * (np.log(p) - np.log(q)), -1)


# `reduction` picks the output shape, so it is static under jit.
_REDUCTION = dict(static_argnames="reduction")


class LossesTest(chex.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.za = rng.normal(size=(6, 5)).astype(np.float64) * 2
    self.zb = rng.normal(size=(6, 5)).astype(np.float64) * 2
    self.y = rng.integers(0, 5, size=6)
    self.pa, self.pb = np_softmax(self.za), np_softmax(self.zb)

  @chex.variants(with_jit=True, without_jit=True)
  def test_cross_entropy(self):
    ref = -np.log(self.pa[np.arange(6), self.y])
    ce = self.variant(losses.cross_entropy, **_REDUCTION)
    np.testing.assert_allclose(ce(self.za, self.y, None), ref, rtol=1e-5)
    np.testing.assert_allclose(ce(self.za, self.y), ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(ce(self.za, self.y, "sum"), ref.sum(), rtol=1e-5)
    chex.assert_shape(ce(self.za, self.y, None), (6,))
    chex.assert_shape(ce(self.za, self.y), ())

  @chex.variants(with_jit=True, without_jit=True)
  def test_entropy_kl_skl(self):
    entropy = self.variant(losses.entropy, **_REDUCTION)
    kl_divergence = self.variant(losses.kl_divergence, **_REDUCTION)
    symmetric_kl = self.variant(losses.symmetric_kl, **_REDUCTION)
    skl_to_uniform = self.variant(losses.skl_to_uniform, **_REDUCTION)
    ent = -np.sum(self.pa * np.log(self.pa), -1)
    np.testing.assert_allclose(entropy(self.za, None), ent, rtol=1e-5)
    kl = np_kl(self.pa, self.pb)
    np.testing.assert_allclose(kl_divergence(self.za, self.zb, None), kl, rtol=1e-4)
    # optax's own KL takes log-predictions and targets: KL(targets || predictions).
    optax_kl = optax.kl_divergence(jax.nn.log_softmax(self.zb), self.pa)
    np.testing.assert_allclose(kl_divergence(self.za, self.zb, None), optax_kl, rtol=1e-4)
    skl = kl + np_kl(self.pb, self.pa)
    np.testing.assert_allclose(symmetric_kl(self.za, self.zb, None), skl, rtol=1e-4)
    u = np.full_like(self.pa, 1 / 5)
    np.testing.assert_allclose(skl_to_uniform(self.za, None),
                               np_kl(self.pa, u) + np_kl(u, self.pa), rtol=1e-4)

  @chex.variants(with_jit=True, without_jit=True)
  def test_soft_cross_entropy_equals_ce_for_one_hot(self):
    one_hot = np.eye(5)[self.y]
    np.testing.assert_allclose(self.variant(losses.soft_cross_entropy)(one_hot, self.za),
                               losses.cross_entropy(self.za, self.y), rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.0, 0.3, 1.0)
  def test_objectives_are_convex_combinations(self, beta):
    ce = -np.log(self.pa[np.arange(6), self.y])
    ent = -np.sum(self.pa * np.log(self.pa), -1)
    np.testing.assert_allclose(
        self.variant(losses.minimum_entropy_objective)(self.za, self.y, beta),
        np.mean((1 - beta) * ce + beta * ent), rtol=1e-5)
    u = np.full_like(self.pa, 1 / 5)
    skl = np_kl(self.pa, u) + np_kl(u, self.pa)
    np.testing.assert_allclose(self.variant(losses.skl_uniform_objective)(self.za, self.y, beta),
                               np.mean((1 - beta) * ce - beta * skl), rtol=1e-4, atol=1e-6)

  def test_gradients_match_closed_forms(self):
    z = self.za.astype(np.float32)
    p = self.pa
    g_ce, g_ent = fast_jit.jit(lambda z, y: (
        jax.grad(lambda z: losses.cross_entropy(z, y, "sum"))(z),
        jax.grad(lambda z: losses.entropy(z, reduction="sum"))(z)))(z, self.y)
    # d CE / dz = p - onehot (per example, summed).
    np.testing.assert_allclose(g_ce, p - np.eye(5)[self.y], atol=1e-5)
    # d H / dz_k = -p_k (log p_k + H).
    ent = -np.sum(p * np.log(p), -1, keepdims=True)
    np.testing.assert_allclose(g_ent, -p * (np.log(p) + ent), atol=1e-5)

  def test_gradients_numerically(self):
    z = jnp.asarray(self.za[:2], jnp.float64) if jax.config.jax_enable_x64 else None
    za, zb = self.za[:2].astype(np.float32), self.zb[:2].astype(np.float32)
    # Jitted: the finite differences call them at several points (one program, not one per op).
    # check_grads itself: chex.assert_numerical_grads multiplies atol by the input's size (here
    # 5e-2 -> 0.5), which passed a zero or a negated gradient. At 1e-2 a gradient scaled by
    # 0.5 fails; the true one passes at 3e-3 too (float32 finite differences).
    for fn in (lambda a: jax.jit(losses.skl_to_uniform)(a),
               lambda a: jax.jit(losses.symmetric_kl)(a, zb)):
      jtu.check_grads(fn, (za,), order=1, atol=1e-2, rtol=1e-2)
    del z

  @chex.variants(with_jit=True, without_jit=True)
  def test_symmetric_kl_zero_iff_equal_and_symmetric(self):
    symmetric_kl = self.variant(losses.symmetric_kl)
    self.assertAlmostEqual(float(symmetric_kl(self.za, self.za)), 0.0, places=6)
    self.assertAlmostEqual(float(symmetric_kl(self.za, self.zb)),
                           float(symmetric_kl(self.zb, self.za)), places=5)

  def test_bad_reduction(self):
    with self.assertRaisesRegex(ValueError, "unknown reduction"):
      losses.cross_entropy(self.za, self.y, "max")


if __name__ == "__main__":
  absltest.main()
