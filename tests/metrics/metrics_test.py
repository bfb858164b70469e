"""Tests for churn_jax.metrics against independent plain-numpy references.

The comparisons with the references run as chex variants, with and without jit: the metrics
are called eagerly by the evaluator and may be jitted by users (validation is skipped for
tracers, the values must not change).
"""


from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import numpy as np

from churn_jax import metrics
from tests.metrics_refs import (
    SHAPES,
    random_probs,
    random_labels,
    peaked_probs,
    ref_churn,
    ref_surrogate_churn,
    ref_churn_on_slices,
    ref_prediction_difference,
    ref_ece,
    ref_nll,
    ref_entropy,
    ref_confidence_gap,
    ref_brier,
    TOL,
)

def _eager(fn, **unused_jit_kwargs):
  return fn


class MetricsVsNumpyTest(chex.TestCase):

  def _pair_metrics(self, n, k, variant):
    rng = np.random.default_rng(n * 100 + k)
    pa, pb = random_probs(rng, n, k), random_probs(rng, n, k)
    labels = random_labels(rng, n, k)
    np.testing.assert_allclose(variant(metrics.churn)(pa, pb), ref_churn(pa, pb))
    surrogate_churn = variant(metrics.surrogate_churn)
    for alpha in (0.5, 1.0, 3.0):
      np.testing.assert_allclose(
          surrogate_churn(pa, pb, alpha=alpha),
          ref_surrogate_churn(pa, pb, alpha), **TOL)
    got = variant(metrics.churn_on_slices)(pa, pb, labels)
    want = ref_churn_on_slices(pa, pb, labels)
    self.assertEqual(set(got), {"correct", "incorrect"})
    for key in want:
      np.testing.assert_allclose(got[key], want[key], **TOL, err_msg=key)
    got = variant(metrics.prediction_difference)(pa, pb)
    want = ref_prediction_difference(pa, pb)
    self.assertEqual(set(got), {"l1", "l2", "relative"})
    for key in want:
      np.testing.assert_allclose(got[key], want[key], **TOL, err_msg=key)

  def _single_model_metrics(self, n, k, variant):
    rng = np.random.default_rng(n * 100 + k + 1)
    probs, labels = random_probs(rng, n, k), random_labels(rng, n, k)
    np.testing.assert_allclose(
        variant(metrics.accuracy)(probs, labels),
        np.mean([np.argmax(p) == y for p, y in zip(probs, labels)]))
    np.testing.assert_allclose(
        variant(metrics.negative_log_likelihood)(probs, labels),
        ref_nll(probs, labels), **TOL)
    np.testing.assert_allclose(
        variant(metrics.entropy)(probs), ref_entropy(probs), **TOL)
    np.testing.assert_allclose(
        variant(metrics.confidence_gap)(probs), ref_confidence_gap(probs),
        **TOL)
    np.testing.assert_allclose(
        variant(metrics.brier_score)(probs, labels), ref_brier(probs, labels),
        **TOL)
    ece = variant(metrics.expected_calibration_error,
                       static_argnames="num_bins")
    for num_bins in (1, 4, 15):
      np.testing.assert_allclose(
          ece(probs, labels, num_bins=num_bins),
          ref_ece(probs, labels, num_bins), **TOL)

  @parameterized.parameters(*SHAPES)
  def test_pair_metrics(self, n, k):
    self._pair_metrics(n, k, _eager)

  @parameterized.parameters(*SHAPES)
  def test_single_model_metrics(self, n, k):
    self._single_model_metrics(n, k, _eager)

  # The same comparisons with and without jit (one shape: each jitted metric is a compile).
  @chex.variants(with_jit=True, without_jit=True)
  def test_pair_metrics_variants(self):
    self._pair_metrics(12, 4, self.variant)

  @chex.variants(with_jit=True, without_jit=True)
  def test_single_model_metrics_variants(self):
    self._single_model_metrics(12, 4, self.variant)

  def test_returns_jax_scalars(self):
    rng = np.random.default_rng(0)
    pa, pb = random_probs(rng, 5, 3), random_probs(rng, 5, 3)
    for value in (metrics.churn(pa, pb), metrics.surrogate_churn(pa, pb),
                  metrics.entropy(pa)):
      self.assertIsInstance(value, jax.Array)
      chex.assert_shape(value, ())


class HandMadeCasesTest(parameterized.TestCase):

  def test_identical_predictions_give_zero(self):
    probs = random_probs(np.random.default_rng(1), 20, 5)
    self.assertEqual(float(metrics.churn(probs, probs)), 0.0)
    for alpha in (1.0, 10.0):
      self.assertEqual(float(metrics.surrogate_churn(probs, probs, alpha)), 0.0)
    for key, value in metrics.prediction_difference(probs, probs).items():
      self.assertEqual(float(value), 0.0, msg=key)

  def test_all_argmaxes_different_gives_churn_one(self):
    pa = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    pb = np.array([[0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]])
    self.assertEqual(float(metrics.churn(pa, pb)), 1.0)

  def test_partial_churn(self):
    pa = np.array([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])
    pb = np.array([[0.4, 0.6], [0.6, 0.4], [0.2, 0.8], [0.9, 0.1]])
    np.testing.assert_allclose(metrics.churn(pa, pb), 0.5)

  def test_surrogate_churn_hand_value(self):
    # Row 0: (1, 1/3) vs (1/3, 1) -> L1 4/3; row 1: identical -> 0.
    pa = np.array([[0.75, 0.25], [0.5, 0.5]])
    pb = np.array([[0.25, 0.75], [0.5, 0.5]])
    np.testing.assert_allclose(
        metrics.surrogate_churn(pa, pb, alpha=1.0), (4 / 3) / 4, rtol=1e-6)
    np.testing.assert_allclose(
        metrics.surrogate_churn(pa, pb, alpha=2.0), (16 / 9) / 4, rtol=1e-6)

  def test_surrogate_churn_approaches_churn(self):
    rng = np.random.default_rng(2)
    pa, pb = peaked_probs(rng, 30, 4), peaked_probs(rng, 30, 4)
    target = float(metrics.churn(pa, pb))
    self.assertGreater(target, 0.2)  # the limit is non-trivial
    gaps = [abs(float(metrics.surrogate_churn(pa, pb, alpha=a)) - target)
            for a in (1.0, 10.0, 100.0)]
    self.assertGreater(gaps[0], gaps[1])
    self.assertGreater(gaps[1], gaps[2])
    self.assertGreater(gaps[0], 1e-3)  # alpha=1 is measurably off churn
    np.testing.assert_allclose(
        metrics.surrogate_churn(pa, pb, alpha=200.0), target, atol=1e-4)

  def test_ece_hand_computed(self):
    # num_bins=4: edges 0, .25, .5, .75, 1 (exact in binary), bins (lo, hi].
    probs = np.array([
        [0.9, 0.05, 0.05],    # conf .9, bin 3, correct
        [0.75, 0.125, 0.125], # conf .75 on an edge -> bin 2, wrong
        [0.25, 0.5, 0.25],    # conf .5 on an edge -> bin 1, correct
        [0.35, 0.25, 0.4],    # conf .4, bin 1, wrong
    ])
    labels = np.array([0, 1, 1, 0])
    # bin 3: 1/4 * |1 - .9|; bin 2: 1/4 * |0 - .75|;
    # bin 1: 2/4 * |.5 - .45|.
    expected = 0.25 * 0.1 + 0.25 * 0.75 + 0.5 * 0.05
    np.testing.assert_allclose(
        metrics.expected_calibration_error(probs, labels, num_bins=4),
        expected, rtol=1e-6)
    # A single bin: |accuracy - mean confidence|.
    np.testing.assert_allclose(
        metrics.expected_calibration_error(probs, labels, num_bins=1),
        abs(0.5 - (0.9 + 0.75 + 0.5 + 0.4) / 4), rtol=1e-6)

  def test_perfect_calibration_gives_zero_ece(self):
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    self.assertEqual(
        float(metrics.expected_calibration_error(probs, np.array([0, 1]))),
        0.0)

  def test_churn_on_slices_hand_case(self):
    preds_a = [0, 1, 2, 0, 1, 2, 1]
    preds_b = [0, 2, 2, 1, 1, 0, 1]
    labels = np.array([0, 1, 2, 1, 1, 0, 0])
    pa = np.eye(3)[preds_a] * 0.7 + 0.1
    pb = np.eye(3)[preds_b] * 0.7 + 0.1
    # a correct {0,1,2,4}: churn 1/4; b correct {0,2,3,4,5}: churn 2/5.
    # a wrong {3,5,6}: churn 2/3; b wrong {1,6}: churn 1/2.
    got = metrics.churn_on_slices(pa, pb, labels)
    np.testing.assert_allclose(got["correct"], (1 / 4 + 2 / 5) / 2, rtol=1e-6)
    np.testing.assert_allclose(got["incorrect"], (2 / 3 + 1 / 2) / 2,
                               rtol=1e-6)

  def test_churn_on_slices_symmetric(self):
    rng = np.random.default_rng(3)
    pa, pb = random_probs(rng, 30, 3), random_probs(rng, 30, 3)
    labels = random_labels(rng, 30, 3)
    ab = metrics.churn_on_slices(pa, pb, labels)
    ba = metrics.churn_on_slices(pb, pa, labels)
    for key in ("correct", "incorrect"):
      np.testing.assert_allclose(ab[key], ba[key], rtol=1e-6, err_msg=key)

  def test_churn_on_slices_empty_slices(self):
    labels = np.array([0, 1, 2])
    pa = np.eye(3)[[0, 1, 2]] * 0.7 + 0.1  # always right
    pb = np.eye(3)[[0, 2, 2]] * 0.7 + 0.1  # wrong on example 1 only
    got = metrics.churn_on_slices(pa, pb, labels)
    # "incorrect" is empty for a, so only b's slice {1} counts: churn 1.
    np.testing.assert_allclose(got["incorrect"], 1.0)
    # "correct": a {0,1,2} -> 1/3, b {0,2} -> 0.
    np.testing.assert_allclose(got["correct"], (1 / 3 + 0) / 2, rtol=1e-6)
    # Empty for both orderings -> 0.0, not NaN.
    got = metrics.churn_on_slices(pa, pa, labels)
    self.assertEqual(float(got["incorrect"]), 0.0)
    self.assertEqual(float(got["correct"]), 0.0)

  def test_prediction_difference_hand_case(self):
    pa = np.array([[1.0, 0.0], [1.0, 0.0]])
    pb = np.array([[1.0, 0.0], [0.5, 0.5]])
    got = metrics.prediction_difference(pa, pb)
    np.testing.assert_allclose(got["l1"], (0 + 1.0) / 2, rtol=1e-6)
    np.testing.assert_allclose(got["l2"], (0 + np.sqrt(0.5)) / 2, rtol=1e-6)
    # Entries: 0, 0 (both tiny), 2*.5/1.5, 2*.5/.5.
    np.testing.assert_allclose(got["relative"], (2 / 3 + 2) / 4, rtol=1e-6)

  def test_single_model_hand_cases(self):
    probs = np.array([[0.5, 0.5, 0.0], [0.0, 0.2, 0.8]])
    labels = np.array([2, 2])
    np.testing.assert_allclose(metrics.accuracy(probs, labels), 0.5)
    # p(true) = 0 is clipped at 1e-12.
    np.testing.assert_allclose(
        metrics.negative_log_likelihood(probs, labels),
        (-np.log(1e-12) - np.log(0.8)) / 2, rtol=1e-5)
    np.testing.assert_allclose(
        metrics.entropy(probs),
        (np.log(2) - 0.2 * np.log(0.2) - 0.8 * np.log(0.8)) / 2, rtol=1e-6)
    np.testing.assert_allclose(
        metrics.confidence_gap(probs), (0.0 + 0.6) / 2, rtol=1e-6, atol=1e-7)


  def test_brier_hand_cases(self):
    # One-hot right: 0; one-hot wrong: 1 + 1 = 2; uniform over K: (1 - 1/K)^2 + (K-1)/K^2.
    probs = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],
                      [0.25, 0.25, 0.25, 0.25]])
    labels = np.array([0, 2, 3])
    for row, want in zip(range(3), (0.0, 2.0, 0.75)):
      np.testing.assert_allclose(
          metrics.brier_score(probs[row:row + 1], labels[row:row + 1]), want,
          rtol=1e-6)
    np.testing.assert_allclose(metrics.brier_score(probs, labels),
                               (0.0 + 2.0 + 0.75) / 3, rtol=1e-6)
    # The summed form (not divided by K): a hand value that the K-averaged
    # form (0.1 here) would miss.
    np.testing.assert_allclose(
        metrics.brier_score(np.array([[0.6, 0.4]]), np.array([1])),
        0.36 + 0.36, rtol=1e-6)


if __name__ == "__main__":
  absltest.main()
