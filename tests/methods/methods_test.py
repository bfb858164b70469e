"""Method losses against independent numpy computations, and where their gradients flow.

The code under test runs under jit, as the trainer runs it (engine/step.py jits the mapped
loss): the step and labels are traced, not Python values, and each test compiles one program
per function and shape instead of one per primitive it would run eagerly (a test's CPU time
is nearly all XLA compiling). The test's own bookkeeping is numpy. PaperFidelityTest keeps an
eager variant of a whole method loss, and core/losses_test.py runs the losses eagerly.
"""

import itertools

from absl.testing import absltest, parameterized
import chex
import jax
from jax import test_util as jtu
import jax.numpy as jnp
import ml_collections
import numpy as np

from churn_jax import methods
from churn_jax.core import losses
from churn_jax.methods import mutual
from tests import fast_jit


def np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_ce(p, y):
  """Mean CE of probabilities p (B, K) against integer labels."""
  return np.mean(-np.log(p[np.arange(len(y)), y]))


def np_soft_ce(q, p):
  return np.mean(-np.sum(q * np.log(p), -1))


def np_kl(p, q):
  return np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))


def np_entropy(p):
  return np.mean(-np.sum(p * np.log(p), -1))


def np_corr_penalty(a, b):
  """Mean over classes of the squared np.corrcoef of the batch columns."""
  return np.mean([np.corrcoef(a[:, k], b[:, k])[0, 1] ** 2 for k in range(a.shape[1])])


def jitted(method):
  """method.loss under jit, step traced as the trainer passes it."""
  return fast_jit.jit(method.loss)


def jitted_grad(method):
  """((value, metrics), d value / d logits) of method.loss, under one jit (step traced)."""
  return fast_jit.jit(jax.value_and_grad(method.loss, has_aux=True))


_corr = fast_jit.jit(losses.batch_correlation_penalty)


def cfg(**kwargs):
  return ml_collections.ConfigDict(kwargs)


def build(**kwargs):
  return methods.build(kwargs["kind"], cfg(**kwargs), num_steps=100)


class MethodsTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.rng = np.random.default_rng(0)

  def inputs(self, m, b=5, k=4):
    z = (self.rng.normal(size=(m, b, k)) * 2).astype(np.float32)
    y = self.rng.integers(0, k, size=b)
    return z, y, np_softmax(z.astype(np.float64))

  # --- ensemble ---------------------------------------------------------------------------

  @parameterized.parameters(2, 3)
  def test_ensemble_value_and_independent_gradients(self, m):
    z, y, p = self.inputs(m)
    method = build(kind="ensemble", num_members=m)
    (value, metrics), grad = jitted_grad(method)(z, y, 0)
    np.testing.assert_allclose(value, sum(np_ce(p[i], y) for i in range(m)), rtol=1e-5)
    np.testing.assert_allclose(metrics["ce"], float(value) / m, rtol=1e-5)
    grad = np.asarray(grad)
    single_grad = fast_jit.jit(jax.grad(lambda zi: losses.cross_entropy(zi, y)))
    for i in range(m):
      # Exactly the single-model CE gradient: (p_i - onehot) / B.
      single = single_grad(z[i])
      np.testing.assert_allclose(grad[i], single, atol=1e-6)
      np.testing.assert_allclose(grad[i], (p[i] - np.eye(4)[y]) / len(y), atol=1e-6)
    self.assertEqual((method.prediction, method.training_cost, method.inference_cost),
                     ("ensemble_mean", float(m), float(m)))

  # --- anti-distillation --------------------------------------------------------------------

  def test_correlation_penalty_matches_corrcoef_and_is_symmetric(self):
    a, b = self.rng.normal(size=(2, 6, 5))
    np.testing.assert_allclose(_corr(a, b), np_corr_penalty(a, b), rtol=1e-4)
    np.testing.assert_allclose(_corr(a, b), _corr(b, a), rtol=1e-6)

  def test_correlation_penalty_zero_for_uncorrelated_one_for_identical(self):
    # Orthogonal centred batch patterns: every class column of `a` is uncorrelated with `b`'s.
    u, v, w = np.array([[1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], np.float32)
    a = np.stack([u, v, w], 1) + np.array([0.3, 0.5, 0.2])     # (B=4, K=3), shifted columns
    b = np.stack([v, w, u], 1) * 2.0 + np.array([0.1, 0.7, 0.4])
    self.assertAlmostEqual(float(_corr(a, b)), 0.0, places=6)
    self.assertAlmostEqual(float(np_corr_penalty(a, b)), 0.0, places=6)
    # Identical (or affinely related, either sign) outputs: the maximum, 1.
    self.assertAlmostEqual(float(_corr(a, a)), 1.0, places=5)
    self.assertAlmostEqual(float(_corr(a, -3 * a + 1)), 1.0, places=5)

  def test_correlation_penalty_constant_column_is_finite(self):
    a = self.rng.normal(size=(5, 3)).astype(np.float32)
    a[:, 1] = 0.25  # No variance across the batch: rho = 0 and a finite gradient.
    value, g = fast_jit.jit(jax.value_and_grad(losses.batch_correlation_penalty))(a, a)
    self.assertTrue(np.all(np.isfinite(g)))
    np.testing.assert_allclose(value, 2 / 3, rtol=1e-5)

  def test_correlation_penalty_gradient_numerically(self):
    a, b = self.rng.normal(size=(2, 4, 3)).astype(np.float32)
    # Jitted: the finite differences call it at many points (one program, not one per op).
    # Plain jax.jit: check_grads differentiates it (compiler options go on outermost jits only).
    # check_grads itself: chex.assert_numerical_grads multiplies atol by the input's size (here
    # 5e-2 -> 0.6, with a penalty in [0, 1]), which passed a zero gradient. At 1e-2 a gradient
    # scaled by 0.5 fails; the true one passes at 3e-3 too (float32 finite differences).
    jtu.check_grads(lambda a: jax.jit(losses.batch_correlation_penalty)(a, b), (a,),
                              order=1, atol=1e-2, rtol=1e-2)

  @parameterized.product(m=(2, 3), outputs=("probs", "logits"))
  def test_anti_distill_value(self, m, outputs):
    z, y, p = self.inputs(m, b=6, k=4)
    method = build(kind="anti_distill", num_members=m, beta=0.7, outputs=outputs)
    out = p if outputs == "probs" else z.astype(np.float64)
    pairs = list(itertools.combinations(range(m), 2))
    corr = np.mean([np_corr_penalty(out[i], out[j]) for i, j in pairs])
    value, metrics = jitted(method)(z, y, 0)
    np.testing.assert_allclose(metrics["correlation"], corr, rtol=1e-4)
    np.testing.assert_allclose(value, sum(np_ce(p[i], y) for i in range(m)) + 0.7 * corr,
                               rtol=1e-4)
    self.assertEqual(method.prediction, "ensemble_mean")

  def test_anti_distill_swap_invariant_and_joint_gradient(self):
    z, y, _ = self.inputs(2)
    method = build(kind="anti_distill", beta=1.0)
    loss = jitted(method)
    value = loss(z, y, 0)[0]
    np.testing.assert_allclose(loss(z[::-1], y, 0)[0], value, rtol=1e-6)
    # The penalty's gradient reaches both members (joint updates).
    g = np.asarray(fast_jit.jit(jax.grad(lambda z: losses.batch_correlation_penalty(
        jax.nn.softmax(z[0]), jax.nn.softmax(z[1]))))(z))
    self.assertGreater(np.abs(g[0]).max(), 1e-4)
    self.assertGreater(np.abs(g[1]).max(), 1e-4)
    # Identical members are maximally correlated.
    same = np.stack([z[0], z[0]])
    self.assertAlmostEqual(float(loss(same, y, 0)[1]["correlation"]), 1.0, places=4)

  # --- peer distillation with stop-gradient peers: mutual, codistill_ce ---------------------

  @parameterized.product(m=(2, 3), kind=("mutual", "codistill_ce"))
  def test_peer_distillation_value(self, m, kind):
    z, y, p = self.inputs(m)
    beta = 0.5
    method = build(kind=kind, num_members=m, beta=beta)
    dist = np_kl if kind == "mutual" else np_soft_ce
    ref = sum(np_ce(p[i], y) + beta * np.mean([dist(p[j], p[i]) for j in range(m) if j != i])
              for i in range(m))
    value, metrics = jitted(method)(z, y, 0)
    np.testing.assert_allclose(value, ref, rtol=1e-5)
    np.testing.assert_allclose(metrics["coef/beta"], beta)
    self.assertEqual((method.prediction, method.num_members, method.training_cost),
                     ("member0", m, float(m)))

  @parameterized.product(m=(2, 3), distance=("kl", "ce"))
  def test_peer_distillation_gradients_skip_the_peer_path(self, m, distance):
    z, y, p = self.inputs(m)
    beta = 0.5
    # jac[i, j] = d (member i's term) / d z_j, with peers = the members themselves (the
    # fresh-peer method).
    jac = np.asarray(fast_jit.jit(jax.jacrev(
        lambda z: mutual.member_terms(z, y, z, beta, distance)[0]))(z))
    for i in range(m):
      for j in range(m):
        if j != i:
          np.testing.assert_array_equal(jac[i, j], 0.0)
    # Full gradient: d/dz_i = (p_i - onehot + beta * (p_i - mean_{j != i} p_j)) / B.
    kind = "mutual" if distance == "kl" else "codistill_ce"
    method = build(kind=kind, num_members=m, beta=beta)
    grad = np.asarray(jitted_grad(method)(z, y, 0)[1])
    for i in range(m):
      peers = np.mean([p[j] for j in range(m) if j != i], 0)
      ref = (p[i] - np.eye(4)[y] + beta * (p[i] - peers)) / len(y)
      np.testing.assert_allclose(grad[i], ref, atol=1e-6)

  def test_codistill_ce_step_burnin(self):
    z, y, p = self.inputs(2)
    method = build(kind="codistill_ce", beta=dict(kind="step_burnin", value=2.0, burnin_steps=10))
    ce = np_ce(p[0], y) + np_ce(p[1], y)
    loss = jitted(method)  # One program: the step is traced, as the trainer passes it.
    value, metrics = loss(z, y, 9)
    np.testing.assert_allclose(value, ce, rtol=1e-5)  # Plain CE before the burn-in step.
    self.assertEqual(float(metrics["coef/beta"]), 0.0)
    value, _ = loss(z, y, 10)
    ref = ce + 2.0 * (np_soft_ce(p[1], p[0]) + np_soft_ce(p[0], p[1]))
    np.testing.assert_allclose(value, ref, rtol=1e-5)

  @parameterized.parameters(2, 3)
  def test_stale_peers(self, m):
    z, y, p = self.inputs(m)
    stale, _, q = self.inputs(m)
    loss = mutual.make_loss(lambda step: 0.3, "ce", use_stale=True)
    ref = sum(np_ce(p[i], y) + 0.3 * np.mean([np_soft_ce(q[j], p[i]) for j in range(m) if j != i])
              for i in range(m))
    # The loss, the functional form and the gradient on the stale peers, in one program.
    value, anil, g = fast_jit.jit(lambda z, s, step: (
        loss(z, y, step, {"peer_logits": s})[0], mutual.anil_loss(z, y, s, 0.3)[0],
        jax.grad(lambda s: loss(z, y, step, {"peer_logits": s})[0])(s)))(z, stale, 0)
    np.testing.assert_allclose(value, ref, rtol=1e-5)
    np.testing.assert_allclose(anil, ref, rtol=1e-5)
    np.testing.assert_array_equal(g, 0.0)

  # --- co-distillation with symmetric KL, joint updates ------------------------------------

  @parameterized.product(m=(2, 3), entropy_beta=(0.0, 0.2))
  def test_codistill_value(self, m, entropy_beta):
    z, y, p = self.inputs(m)
    method = build(kind="codistill", num_members=m, beta=0.8, entropy_beta=entropy_beta)
    pairs = list(itertools.combinations(range(m), 2))
    skl = np.mean([np_kl(p[i], p[j]) + np_kl(p[j], p[i]) for i, j in pairs])
    ce = sum(np_ce(p[i], y) for i in range(m))
    ent = sum(np_entropy(p[i]) for i in range(m))
    ref = (1 - entropy_beta) * ce + entropy_beta * ent + 0.8 * skl
    value, metrics = jitted(method)(z, y, 0)
    np.testing.assert_allclose(value, ref, rtol=1e-5)
    np.testing.assert_allclose(metrics["skl"], skl, rtol=1e-5)

  @parameterized.parameters(2, 3)
  def test_codistill_joint_gradient(self, m):
    z, y, p = self.inputs(m)
    beta = 0.8
    method = build(kind="codistill", num_members=m, beta=beta)
    grad = np.asarray(jitted_grad(method)(z, y, 0)[1])

    def skl_grad(pa, pb):  # d/dz_a [KL(pa||pb) + KL(pb||pa)], per example.
      kl_ab = np.sum(pa * (np.log(pa) - np.log(pb)), -1, keepdims=True)
      return pa * (np.log(pa) - np.log(pb) - kl_ab) + pa - pb

    num_pairs = m * (m - 1) / 2
    for i in range(m):
      coupling = sum(skl_grad(p[i], p[j]) for j in range(m) if j != i) / num_pairs
      ref = (p[i] - np.eye(4)[y] + beta * coupling) / len(y)
      np.testing.assert_allclose(grad[i], ref, atol=1e-6)
    # Joint: the SKL of pair (0, 1) has a non-zero gradient on both of its members.
    g = np.asarray(fast_jit.jit(jax.grad(lambda z: losses.symmetric_kl(z[0], z[1])))(z))
    self.assertGreater(np.abs(g[0]).max(), 1e-4)
    self.assertGreater(np.abs(g[1]).max(), 1e-4)

  # --- top-k regularisers -----------------------------------------------------------------

  def test_top_k_regularisers(self):
    z, _, p = self.inputs(1, b=6, k=5)
    z, p = z[0], p[0]
    out = fast_jit.jit(lambda z: dict(
        ent5=losses.top_k_entropy(z, 5), ent=losses.entropy(z),
        skl5=losses.top_k_skl_to_uniform(z, 5), skl=losses.skl_to_uniform(z),
        ent3=losses.top_k_entropy(z, 3), skl3=losses.top_k_skl_to_uniform(z, 3),
        grad3=jax.grad(lambda z: losses.top_k_entropy(z, 3))(z)))(z)
    np.testing.assert_allclose(out["ent5"], out["ent"], rtol=1e-6)
    np.testing.assert_allclose(out["skl5"], out["skl"], rtol=1e-6)
    # k < K: the top-k probabilities renormalised, against numpy.
    top = np.sort(p, -1)[:, -3:]
    q = top / top.sum(-1, keepdims=True)
    np.testing.assert_allclose(out["ent3"], np_entropy(q), rtol=1e-5)
    u = np.full_like(q, 1 / 3)
    np.testing.assert_allclose(out["skl3"], np_kl(q, u) + np_kl(u, q), rtol=1e-5)
    # Only the top-k logits receive gradient.
    g = out["grad3"]
    bottom = np.argsort(z, -1)[:, :2]
    np.testing.assert_array_equal(np.take_along_axis(np.asarray(g), bottom, -1), 0.0)
    with self.assertRaisesRegex(ValueError, "top_k"):
      losses.top_k_entropy(z, 6)

  @parameterized.parameters("entropy", "skl")
  def test_regularized_top_k(self, kind):
    z, y, _ = self.inputs(1, b=6, k=5)
    full_method, top_all_method, top3_method = (
        build(kind=kind, beta=0.3, **top_k) for top_k in ({}, dict(top_k=5), dict(top_k=3)))
    objective = (losses.minimum_entropy_objective if kind == "entropy"
                 else losses.skl_uniform_objective)
    top_k_reg = losses.top_k_entropy if kind == "entropy" else losses.top_k_skl_to_uniform
    # The three methods and the functional forms, in one program (step traced).
    full, top_all, (top3, metrics), want, reg, ce = fast_jit.jit(lambda z, y, step: (
        full_method.loss(z, y, step)[0], top_all_method.loss(z, y, step)[0],
        top3_method.loss(z, y, step), objective(z[0], y, 0.3), top_k_reg(z[0], 3),
        losses.cross_entropy(z[0], y)))(z, y, 0)
    np.testing.assert_allclose(full, want, rtol=1e-5)
    np.testing.assert_allclose(top_all, full, rtol=1e-6)
    sign = 1.0 if kind == "entropy" else -1.0
    np.testing.assert_allclose(top3, 0.7 * float(ce) + sign * 0.3 * float(reg), rtol=1e-5)
    self.assertIn("entropy" if kind == "entropy" else "skl_uniform", metrics)


class PaperFidelityTest(parameterized.TestCase):
  """Regularised co-distillation (eq. 19) and independent ensemble members, against numpy."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_codistill_with_skl_to_uniform_regulariser(self):
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(2, 6, 5)) * 2).astype(np.float32)
    y = rng.integers(0, 5, size=6)
    p = np_softmax(z.astype(np.float64))
    u = np.full(5, 0.2)
    beta, s = 0.8, 0.3
    method = build(kind="codistill", beta=beta, skl_beta=s)
    ce = sum(np_ce(p[i], y) for i in range(2))
    sklu = sum(np_kl(p[i], u) + np_kl(u, p[i]) for i in range(2))
    pair = np_kl(p[0], p[1]) + np_kl(p[1], p[0])
    value, metrics = self.variant(method.loss)(jnp.asarray(z), y, 0)
    np.testing.assert_allclose(value, (1 - s) * ce - s * sklu + beta * pair, rtol=1e-5)
    np.testing.assert_allclose(metrics["coef/skl_beta"], s)
    np.testing.assert_allclose(metrics["skl_uniform"], sklu / 2, rtol=1e-5)
    # top_k = 3: the regulariser on the renormalised top-3 probabilities of each member.
    top = np.sort(p, -1)[..., -3:]
    q = top / top.sum(-1, keepdims=True)
    u3 = np.full(3, 1 / 3)
    sklu3 = sum(np_kl(q[i], u3) + np_kl(u3, q[i]) for i in range(2))
    value3, _ = self.variant(build(kind="codistill", beta=beta, skl_beta=s, top_k=3).loss)(
        jnp.asarray(z), y, 0)
    np.testing.assert_allclose(value3, (1 - s) * ce - s * sklu3 + beta * pair, rtol=1e-5)

  def test_ensemble_members_get_their_own_labels(self):
    z = (np.random.default_rng(4).normal(size=(2, 5, 4)) * 2).astype(np.float32)
    p = np_softmax(z.astype(np.float64))
    y = np.stack([np.arange(5) % 4, (np.arange(5) + 1) % 4])  # (M, B): independent batches.
    method = build(kind="ensemble", num_members=2)
    self.assertEqual((method.member_data, method.streams_per_run), ("independent", 2))
    value, _ = jitted(method)(z, y, 0)
    np.testing.assert_allclose(value, np_ce(p[0], y[0]) + np_ce(p[1], y[1]), rtol=1e-5)
    shared = build(kind="ensemble", num_members=2, member_data="shared")
    self.assertEqual(shared.streams_per_run, 1)
    np.testing.assert_allclose(jitted(shared)(z, y[0], 0)[0],
                               np_ce(p[0], y[0]) + np_ce(p[1], y[0]), rtol=1e-5)
    with self.assertRaisesRegex(ValueError, "member_data"):
      build(kind="ensemble", member_data="sometimes")


if __name__ == "__main__":
  absltest.main()
