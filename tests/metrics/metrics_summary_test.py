"""Tests for churn_jax.metrics' run summaries (pairwise, per_run, evaluate.summarize) and
its array types, against the plain-numpy references of tests/metrics_refs.py."""

import functools
import itertools

from absl.testing import absltest
from absl.testing import parameterized
import jax.numpy as jnp
import numpy as np

from churn_jax import metrics
from churn_jax.study import evaluate
from tests.metrics_refs import (
    random_probs,
    random_labels,
    ref_churn,
    ref_surrogate_churn,
    ref_churn_on_slices,
    ref_prediction_difference,
    ref_ece,
    ref_entropy,
    ref_brier,
    TOL,
)


class SummaryTest(absltest.TestCase):

  def test_summary_reports_brier_per_run(self):
    rng = np.random.default_rng(7)
    runs = np.stack([random_probs(rng, 12, 4) for _ in range(3)])
    labels = random_labels(rng, 12, 4)
    got = evaluate.summarize(runs, labels)["brier"]
    want = [ref_brier(r, labels) for r in runs]
    np.testing.assert_allclose(got["values"], want, **TOL)
    np.testing.assert_allclose(got["mean"], np.mean(want), **TOL)


class PairwiseTest(parameterized.TestCase):

  def _runs(self, r=3, n=25, k=4, seed=4):
    rng = np.random.default_rng(seed)
    return (np.stack([random_probs(rng, n, k) for _ in range(r)]),
            random_labels(rng, n, k))

  @parameterized.named_parameters(
      ("array", lambda x: x),
      ("list", list),
      ("jax_array", jnp.asarray),
  )
  def test_pairwise_churn(self, convert):
    runs, _ = self._runs()
    got = metrics.pairwise(metrics.churn, convert(runs))
    want = [ref_churn(runs[i], runs[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    self.assertLen(got["values"], 3)
    np.testing.assert_allclose(got["values"], want, rtol=1e-6)
    self.assertAlmostEqual(got["mean"], np.mean(want), places=6)
    self.assertAlmostEqual(got["std"], np.std(want, ddof=0), places=6)
    self.assertIsInstance(got["mean"], float)
    self.assertIsInstance(got["std"], float)
    self.assertTrue(all(isinstance(v, float) for v in got["values"]))

  def test_pairwise_pair_count_and_std_is_population(self):
    runs, _ = self._runs(r=4, seed=5)
    got = metrics.pairwise(metrics.surrogate_churn, runs)
    values = [ref_surrogate_churn(a, b, 1.0)
              for a, b in itertools.combinations(runs, 2)]
    self.assertLen(got["values"], 6)
    np.testing.assert_allclose(got["values"], values, **TOL)
    np.testing.assert_allclose(got["std"], np.std(values, ddof=0), **TOL)
    self.assertNotAlmostEqual(got["std"], np.std(values, ddof=1), places=6)

  def test_pairwise_with_labels_and_dict_metric(self):
    runs, labels = self._runs()
    got = metrics.pairwise(metrics.churn_on_slices, runs, labels)
    self.assertEqual(set(got), {"correct", "incorrect"})
    for key in got:
      want = [ref_churn_on_slices(a, b, labels)[key]
              for a, b in itertools.combinations(runs, 2)]
      self.assertEqual(set(got[key]), {"mean", "std", "values"})
      np.testing.assert_allclose(got[key]["values"], want, **TOL)
      np.testing.assert_allclose(got[key]["mean"], np.mean(want), **TOL)
      np.testing.assert_allclose(got[key]["std"], np.std(want), **TOL)

  def test_pairwise_metric_with_kwargs_via_partial(self):
    runs, _ = self._runs()
    got = metrics.pairwise(
        functools.partial(metrics.surrogate_churn, alpha=3.0), runs)
    want = [ref_surrogate_churn(a, b, 3.0)
            for a, b in itertools.combinations(runs, 2)]
    np.testing.assert_allclose(got["values"], want, **TOL)

  def test_per_run(self):
    runs, labels = self._runs()
    got = metrics.per_run(metrics.accuracy, runs, labels)
    want = [np.mean(np.argmax(r, axis=1) == labels) for r in runs]
    self.assertLen(got["values"], 3)
    np.testing.assert_allclose(got["values"], want, rtol=1e-6)
    np.testing.assert_allclose(got["mean"], np.mean(want), rtol=1e-6)
    np.testing.assert_allclose(got["std"], np.std(want), rtol=1e-6, atol=1e-9)
    got = metrics.per_run(metrics.entropy, list(runs))
    np.testing.assert_allclose(
        got["values"], [ref_entropy(r) for r in runs], **TOL)


class ArrayTypesAndJitTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(6)
    self.pa, self.pb = random_probs(rng, 12, 4), random_probs(rng, 12, 4)
    self.labels = random_labels(rng, 12, 4)

  @parameterized.named_parameters(("numpy", np.asarray), ("jax", jnp.asarray))
  def test_input_array_types(self, convert):
    pa, pb, labels = convert(self.pa), convert(self.pb), convert(self.labels)
    np.testing.assert_allclose(metrics.churn(pa, pb),
                               ref_churn(self.pa, self.pb))
    np.testing.assert_allclose(metrics.surrogate_churn(pa, pb, 2.0),
                               ref_surrogate_churn(self.pa, self.pb, 2.0),
                               **TOL)
    np.testing.assert_allclose(
        metrics.expected_calibration_error(pa, labels),
        ref_ece(self.pa, self.labels, 15), **TOL)
    np.testing.assert_allclose(
        metrics.churn_on_slices(pa, pb, labels)["correct"],
        ref_churn_on_slices(self.pa, self.pb, self.labels)["correct"], **TOL)
    np.testing.assert_allclose(
        metrics.prediction_difference(pa, pb)["l1"],
        ref_prediction_difference(self.pa, self.pb)["l1"], **TOL)
    np.testing.assert_allclose(metrics.accuracy(pa, labels),
                               np.mean(self.pa.argmax(1) == self.labels))

  # The values under jit: MetricsVsNumpyTest's with_jit variants (same (12, 4) shape).


if __name__ == "__main__":
  absltest.main()
