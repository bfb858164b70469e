"""Tests for churn_jax.metrics against independent plain-numpy references.

The comparisons with the references run as chex variants, with and without jit: the metrics
are called eagerly by the evaluator and may be jitted by users (validation is skipped for
tracers, the values must not change).
"""

import functools
import itertools

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from churn_jax import evaluate, metrics

_SHAPES = ((1, 2), (7, 3), (40, 10))


def _random_probs(rng, n, k, concentration=0.5):
  # Cast once to float32 so implementation and reference see the same values.
  return rng.dirichlet(np.full(k, concentration), size=n).astype(np.float32)


def _random_labels(rng, n, k):
  return rng.integers(0, k, size=n).astype(np.int32)


def _peaked_probs(rng, n, k, top=0.6):
  """Rows with a unique, well-separated max (`top`) at a random class."""
  probs = np.zeros((n, k))
  top_idx = rng.integers(0, k, size=n)
  for i in range(n):
    rest = rng.dirichlet(np.ones(k - 1)) * (1.0 - top)
    probs[i] = np.insert(rest, top_idx[i], top)
  return probs.astype(np.float32)


# ---------------------------------------------------------------------------
# Plain-numpy references (loops, float64) written independently of churn_jax.metrics.
# ---------------------------------------------------------------------------


def _ref_churn(pa, pb):
  pa, pb = np.float64(pa), np.float64(pb)
  return np.mean([np.argmax(a) != np.argmax(b) for a, b in zip(pa, pb)])


def _ref_surrogate_churn(pa, pb, alpha):
  total = 0.0
  for a, b in zip(np.float64(pa), np.float64(pb)):
    total += np.sum(np.abs((a / a.max()) ** alpha - (b / b.max()) ** alpha))
  return total / (2 * len(pa))


def _ref_slice_rate(ref, other, labels, want_correct):
  """Churn among examples where `ref` is (in)correct, or None if none are."""
  idx = [
      n for n in range(len(labels))
      if (np.argmax(ref[n]) == labels[n]) == want_correct
  ]
  if not idx:
    return None
  return np.mean([np.argmax(ref[n]) != np.argmax(other[n]) for n in idx])


def _ref_churn_on_slices(pa, pb, labels):
  out = {}
  for key, want in (("correct", True), ("incorrect", False)):
    rates = [
        r for r in (_ref_slice_rate(pa, pb, labels, want),
                    _ref_slice_rate(pb, pa, labels, want))
        if r is not None
    ]
    out[key] = np.mean(rates) if rates else 0.0
  return out


def _ref_prediction_difference(pa, pb):
  pa, pb = np.float64(pa), np.float64(pb)
  l1, l2, rel = [], [], []
  for a, b in zip(pa, pb):
    l1.append(np.sum(np.abs(a - b)))
    l2.append(np.sqrt(np.sum((a - b) ** 2)))
    for x, y in zip(a, b):
      rel.append(0.0 if (x < 1e-7 and y < 1e-7) else 2 * abs(x - y) / (x + y))
  return {"l1": np.mean(l1), "l2": np.mean(l2), "relative": np.mean(rel)}


def _ref_ece(probs, labels, num_bins):
  probs = np.float64(probs)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  conf = probs.max(axis=1)
  correct = probs.argmax(axis=1) == labels
  ece = 0.0
  for b in range(num_bins):
    lo, hi = edges[b], edges[b + 1]
    in_bin = (conf > lo) & (conf <= hi)
    if b == 0:
      in_bin |= conf == 0.0
    if in_bin.any():
      ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
  return ece


def _ref_nll(probs, labels):
  return -np.mean(
      [np.log(max(float(p[y]), 1e-12)) for p, y in zip(probs, labels)])


def _ref_entropy(probs):
  return np.mean(
      [-sum(float(x) * np.log(float(x)) for x in p if x > 0) for p in probs])


def _ref_confidence_gap(probs):
  return np.mean([np.sort(p)[-1] - np.sort(p)[-2] for p in np.float64(probs)])


def _ref_brier(probs, labels):
  return np.mean([sum((float(p[k]) - (k == y)) ** 2 for k in range(len(p)))
                  for p, y in zip(probs, labels)])


_TOL = dict(rtol=1e-5, atol=1e-6)


def _eager(fn, **unused_jit_kwargs):
  return fn


class MetricsVsNumpyTest(chex.TestCase):

  def _pair_metrics(self, n, k, variant):
    rng = np.random.default_rng(n * 100 + k)
    pa, pb = _random_probs(rng, n, k), _random_probs(rng, n, k)
    labels = _random_labels(rng, n, k)
    np.testing.assert_allclose(variant(metrics.churn)(pa, pb), _ref_churn(pa, pb))
    surrogate_churn = variant(metrics.surrogate_churn)
    for alpha in (0.5, 1.0, 3.0):
      np.testing.assert_allclose(
          surrogate_churn(pa, pb, alpha=alpha),
          _ref_surrogate_churn(pa, pb, alpha), **_TOL)
    got = variant(metrics.churn_on_slices)(pa, pb, labels)
    want = _ref_churn_on_slices(pa, pb, labels)
    self.assertEqual(set(got), {"correct", "incorrect"})
    for key in want:
      np.testing.assert_allclose(got[key], want[key], **_TOL, err_msg=key)
    got = variant(metrics.prediction_difference)(pa, pb)
    want = _ref_prediction_difference(pa, pb)
    self.assertEqual(set(got), {"l1", "l2", "relative"})
    for key in want:
      np.testing.assert_allclose(got[key], want[key], **_TOL, err_msg=key)

  def _single_model_metrics(self, n, k, variant):
    rng = np.random.default_rng(n * 100 + k + 1)
    probs, labels = _random_probs(rng, n, k), _random_labels(rng, n, k)
    np.testing.assert_allclose(
        variant(metrics.accuracy)(probs, labels),
        np.mean([np.argmax(p) == y for p, y in zip(probs, labels)]))
    np.testing.assert_allclose(
        variant(metrics.negative_log_likelihood)(probs, labels),
        _ref_nll(probs, labels), **_TOL)
    np.testing.assert_allclose(
        variant(metrics.entropy)(probs), _ref_entropy(probs), **_TOL)
    np.testing.assert_allclose(
        variant(metrics.confidence_gap)(probs), _ref_confidence_gap(probs),
        **_TOL)
    np.testing.assert_allclose(
        variant(metrics.brier_score)(probs, labels), _ref_brier(probs, labels),
        **_TOL)
    ece = variant(metrics.expected_calibration_error,
                       static_argnames="num_bins")
    for num_bins in (1, 4, 15):
      np.testing.assert_allclose(
          ece(probs, labels, num_bins=num_bins),
          _ref_ece(probs, labels, num_bins), **_TOL)

  @parameterized.parameters(*_SHAPES)
  def test_pair_metrics(self, n, k):
    self._pair_metrics(n, k, _eager)

  @parameterized.parameters(*_SHAPES)
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
    pa, pb = _random_probs(rng, 5, 3), _random_probs(rng, 5, 3)
    for value in (metrics.churn(pa, pb), metrics.surrogate_churn(pa, pb),
                  metrics.entropy(pa)):
      self.assertIsInstance(value, jax.Array)
      chex.assert_shape(value, ())


class HandMadeCasesTest(parameterized.TestCase):

  def test_identical_predictions_give_zero(self):
    probs = _random_probs(np.random.default_rng(1), 20, 5)
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
    pa, pb = _peaked_probs(rng, 30, 4), _peaked_probs(rng, 30, 4)
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
    pa, pb = _random_probs(rng, 30, 3), _random_probs(rng, 30, 3)
    labels = _random_labels(rng, 30, 3)
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


class SummaryTest(absltest.TestCase):

  def test_summary_reports_brier_per_run(self):
    rng = np.random.default_rng(7)
    runs = np.stack([_random_probs(rng, 12, 4) for _ in range(3)])
    labels = _random_labels(rng, 12, 4)
    got = evaluate.summarize(runs, labels)["brier"]
    want = [_ref_brier(r, labels) for r in runs]
    np.testing.assert_allclose(got["values"], want, **_TOL)
    np.testing.assert_allclose(got["mean"], np.mean(want), **_TOL)


class PairwiseTest(parameterized.TestCase):

  def _runs(self, r=3, n=25, k=4, seed=4):
    rng = np.random.default_rng(seed)
    return (np.stack([_random_probs(rng, n, k) for _ in range(r)]),
            _random_labels(rng, n, k))

  @parameterized.named_parameters(
      ("array", lambda x: x),
      ("list", list),
      ("jax_array", jnp.asarray),
  )
  def test_pairwise_churn(self, convert):
    runs, _ = self._runs()
    got = metrics.pairwise(metrics.churn, convert(runs))
    want = [_ref_churn(runs[i], runs[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
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
    values = [_ref_surrogate_churn(a, b, 1.0)
              for a, b in itertools.combinations(runs, 2)]
    self.assertLen(got["values"], 6)
    np.testing.assert_allclose(got["values"], values, **_TOL)
    np.testing.assert_allclose(got["std"], np.std(values, ddof=0), **_TOL)
    self.assertNotAlmostEqual(got["std"], np.std(values, ddof=1), places=6)

  def test_pairwise_with_labels_and_dict_metric(self):
    runs, labels = self._runs()
    got = metrics.pairwise(metrics.churn_on_slices, runs, labels)
    self.assertEqual(set(got), {"correct", "incorrect"})
    for key in got:
      want = [_ref_churn_on_slices(a, b, labels)[key]
              for a, b in itertools.combinations(runs, 2)]
      self.assertEqual(set(got[key]), {"mean", "std", "values"})
      np.testing.assert_allclose(got[key]["values"], want, **_TOL)
      np.testing.assert_allclose(got[key]["mean"], np.mean(want), **_TOL)
      np.testing.assert_allclose(got[key]["std"], np.std(want), **_TOL)

  def test_pairwise_metric_with_kwargs_via_partial(self):
    runs, _ = self._runs()
    got = metrics.pairwise(
        functools.partial(metrics.surrogate_churn, alpha=3.0), runs)
    want = [_ref_surrogate_churn(a, b, 3.0)
            for a, b in itertools.combinations(runs, 2)]
    np.testing.assert_allclose(got["values"], want, **_TOL)

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
        got["values"], [_ref_entropy(r) for r in runs], **_TOL)


class ArrayTypesAndJitTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(6)
    self.pa, self.pb = _random_probs(rng, 12, 4), _random_probs(rng, 12, 4)
    self.labels = _random_labels(rng, 12, 4)

  @parameterized.named_parameters(("numpy", np.asarray), ("jax", jnp.asarray))
  def test_input_array_types(self, convert):
    pa, pb, labels = convert(self.pa), convert(self.pb), convert(self.labels)
    np.testing.assert_allclose(metrics.churn(pa, pb),
                               _ref_churn(self.pa, self.pb))
    np.testing.assert_allclose(metrics.surrogate_churn(pa, pb, 2.0),
                               _ref_surrogate_churn(self.pa, self.pb, 2.0),
                               **_TOL)
    np.testing.assert_allclose(
        metrics.expected_calibration_error(pa, labels),
        _ref_ece(self.pa, self.labels, 15), **_TOL)
    np.testing.assert_allclose(
        metrics.churn_on_slices(pa, pb, labels)["correct"],
        _ref_churn_on_slices(self.pa, self.pb, self.labels)["correct"], **_TOL)
    np.testing.assert_allclose(
        metrics.prediction_difference(pa, pb)["l1"],
        _ref_prediction_difference(self.pa, self.pb)["l1"], **_TOL)
    np.testing.assert_allclose(metrics.accuracy(pa, labels),
                               np.mean(self.pa.argmax(1) == self.labels))

  # The values under jit: MetricsVsNumpyTest's with_jit variants (same (12, 4) shape).


def _probs_2x3():
  return np.full((2, 3), 1 / 3)


class ValidationTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("one_run", lambda: metrics.pairwise(metrics.churn, [_probs_2x3()]),
       "pairwise metrics need at least 2 runs, got 1"),
      ("one_run_array",
       lambda: metrics.pairwise(metrics.churn, _probs_2x3()[None]),
       "pairwise metrics need at least 2 runs, got 1"),
      ("runs_shape_mismatch",
       lambda: metrics.pairwise(metrics.churn,
                                [_probs_2x3(), np.full((3, 3), 1 / 3)]),
       r"same shape.*\(2, 3\).*\(3, 3\)"),
      ("runs_array_not_3d",
       lambda: metrics.pairwise(metrics.churn, _probs_2x3()),
       r"num_runs, num_examples, num_classes.*\(2, 3\)"),
      ("per_run_empty", lambda: metrics.per_run(metrics.entropy, []),
       "at least 1 run, got 0"),
      ("pair_shape_mismatch",
       lambda: metrics.churn(_probs_2x3(), np.full((2, 4), 0.25)),
       r"probs_a and probs_b must have the same shape, got \(2, 3\) and "
       r"\(2, 4\)"),
      ("not_2d", lambda: metrics.churn(np.array([0.5, 0.5]), _probs_2x3()),
       r"probs_a must be 2-D .*got shape \(2,\)"),
      ("not_2d_single", lambda: metrics.entropy(np.ones((1, 2, 2)) / 2),
       "probs must be 2-D"),
      ("empty", lambda: metrics.entropy(np.zeros((0, 3))),
       "at least one example"),
      ("labels_length",
       lambda: metrics.accuracy(_probs_2x3(), np.array([0, 1, 2])),
       r"labels must have shape \(2,\).*got shape \(3,\)"),
      ("labels_out_of_range",
       lambda: metrics.accuracy(_probs_2x3(), np.array([0, 3])),
       r"labels must lie in \[0, 3\)"),
      ("labels_negative",
       lambda: metrics.churn_on_slices(_probs_2x3(), _probs_2x3(),
                                       np.array([-1, 0])),
       r"labels must lie in \[0, 3\)"),
      ("labels_float",
       lambda: metrics.negative_log_likelihood(_probs_2x3(),
                                               np.array([0.0, 1.0])),
       "labels must be integer"),
      ("brier_labels_out_of_range",
       lambda: metrics.brier_score(_probs_2x3(), np.array([0, 3])),
       r"labels must lie in \[0, 3\)"),
      ("brier_logits",
       lambda: metrics.brier_score(np.array([[2.0, 1.0, 0.0]] * 2),
                                   np.array([0, 1])),
       "probs must hold probabilities"),
      ("negative_probs",
       lambda: metrics.churn(np.array([[1.5, -0.5], [0.5, 0.5]]),
                             np.full((2, 2), 0.5)),
       r"probs_a must hold probabilities.*1 of 2 rows have negative"),
      ("logits",
       lambda: metrics.surrogate_churn(np.full((2, 2), 0.5),
                                       np.array([[2.0, 1.0], [0.5, 0.5]])),
       r"probs_b must hold probabilities.*1 of 2 rows do not sum to 1 .*"
       r"worst sum 3\b"),
      ("row_sum_worst",
       lambda: metrics.entropy(np.array([[0.6, 0.6], [0.5, 0.5],
                                         [0.45, 0.45]])),
       r"2 of 3 rows do not sum to 1.*worst sum 1\.2\b"),
      ("nan_probs",
       lambda: metrics.entropy(np.array([[np.nan, 0.5], [0.5, 0.5]])),
       "1 of 2 rows do not sum to 1"),
      ("alpha_zero",
       lambda: metrics.surrogate_churn(_probs_2x3(), _probs_2x3(), alpha=0.0),
       "alpha must be > 0, got 0"),
      ("alpha_negative",
       lambda: metrics.surrogate_churn(_probs_2x3(), _probs_2x3(), alpha=-1),
       "alpha must be > 0"),
      ("num_bins_zero",
       lambda: metrics.expected_calibration_error(_probs_2x3(),
                                                  np.array([0, 1]),
                                                  num_bins=0),
       "num_bins must be >= 1, got 0"),
  )
  def test_raises(self, fn, regex):
    with self.assertRaisesRegex(ValueError, regex):
      fn()

  def test_error_messages_are_one_line(self):
    with self.assertRaises(ValueError) as ctx:
      metrics.churn(np.array([[2.0, 1.0]]), np.array([[0.5, 0.5]]))
    self.assertNotIn("\n", str(ctx.exception))

  def test_tolerates_float32_rounding(self):
    # Rows off by much less than 1e-3 are still probabilities.
    probs = np.array([[0.5, 0.5004], [0.3333, 0.6666]])
    np.testing.assert_allclose(metrics.churn(probs, probs), 0.0)


if __name__ == "__main__":
  absltest.main()
