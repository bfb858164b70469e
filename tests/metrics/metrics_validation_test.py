"""Tests for churn_jax.metrics' input checks: bad input raises one-line ValueErrors, rounding
slack is accepted, tracers skip validation."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from churn_jax import metrics


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
