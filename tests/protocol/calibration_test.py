"""The verdict as an instrument: its false-verdict rate and power, measured by simulation
through stats.difference (the function every table calls), and the simulator's metrics
checked against evaluate.summarize on the same probabilities."""

from absl.testing import absltest
import numpy as np

from churn_jax.protocol import simulate, stats
from churn_jax.study import evaluate

# Small test sets keep this fast; benchmarks/stats_calibration.py runs the full-size study.
SIZE = dict(num_examples=500, num_classes=5, chunk=100)
NULL_SIMS = 400
MAX_FALSE = 0.07  # 5% nominal plus Monte-Carlo error (1 s.e. at 400 sims is 1.1 points).
METRICS = ("accuracy", "churn", "churn_correct")


def _rate(pairs, metric, verdicts):
  return np.mean([stats.difference(e, r, metric)["verdict"] in verdicts for e, r in pairs])


class CalibrationTest(absltest.TestCase):

  def test_simulated_metrics_match_evaluate_summarize(self):
    rng = np.random.default_rng(0)
    logits, labels = simulate.sample_logits(rng, 2, 4, num_examples=200, num_classes=5)
    metrics = simulate.PER_RUN + simulate.PAIR
    pairs = simulate.entries(simulate.metric_values(logits, labels, metrics))
    probs = simulate.softmax(logits)
    for s in range(2):
      for side, index in ((0, 1), (1, 0)):  # entries() gives (method, reference).
        want = evaluate.summarize(probs[s, index], labels[s])
        for key in metrics:
          np.testing.assert_allclose(pairs[s][side][key]["values"], want[key]["values"],
                                     atol=2e-5, err_msg=key)

  def _null(self, num_runs, seed):
    pairs = simulate.simulate(np.random.default_rng(seed), NULL_SIMS, num_runs, METRICS, **SIZE)
    for metric in METRICS:
      rate = _rate(pairs, metric, ("held", "reversed"))
      self.assertLessEqual(rate, MAX_FALSE, f"R={num_runs} {metric}: false rate {rate:.3f}")

  def test_false_verdict_rate_at_5_runs(self):
    self._null(5, seed=1)

  def test_false_verdict_rate_at_10_runs(self):
    self._null(10, seed=2)

  def test_power_at_10_runs(self):
    # Stated effects: the method's run noise x0.7 (churn about 3.6% -> 2.5%), and its
    # true-class margin +0.15 (accuracy about 91.9% -> 92.7%); at least half must be 'held'.
    rng = np.random.default_rng(3)
    for effect, size in (("churn", 0.3), ("accuracy", 0.15)):
      pairs = simulate.simulate(rng, 200, 10, (effect,), effect=effect, size=size, **SIZE)
      rate = _rate(pairs, effect, ("held",))
      self.assertGreaterEqual(rate, 0.5, f"{effect}: power {rate:.3f}")

  def test_two_runs_give_no_verdict(self):
    pairs = simulate.simulate(np.random.default_rng(4), 5, 2, METRICS, effect="accuracy",
                              size=3.0, **SIZE)
    for metric in METRICS:
      self.assertEqual(_rate(pairs, metric, ("too few runs",)), 1.0, metric)


if __name__ == "__main__":
  absltest.main()
