"""The study summary equals the metrics computed by hand over runs and run pairs."""

from absl.testing import absltest
import numpy as np

from churn_jax import metrics
from churn_jax.study import evaluate


class SummarizeTest(absltest.TestCase):

  def test_summary_matches_direct_computation(self):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5) * 0.5, size=(3, 40)).astype(np.float32)
    labels = rng.integers(0, 5, size=40)
    out = evaluate.summarize(probs, labels, schurn_alpha=2.0)
    pairs = [(0, 1), (0, 2), (1, 2)]
    churn = [np.mean(probs[i].argmax(-1) != probs[j].argmax(-1)) for i, j in pairs]
    self.assertAlmostEqual(out["churn"]["mean"], np.mean(churn), places=6)
    self.assertAlmostEqual(out["churn"]["std"], np.std(churn), places=6)
    acc = [np.mean(p.argmax(-1) == labels) for p in probs]
    self.assertAlmostEqual(out["accuracy"]["mean"], np.mean(acc), places=6)
    schurn = [float(metrics.surrogate_churn(probs[i], probs[j], alpha=2.0)) for i, j in pairs]
    self.assertAlmostEqual(out["schurn"]["mean"], np.mean(schurn), places=6)
    self.assertEqual(out["num_runs"], 3)
    self.assertLen(out["churn_correct"]["values"], 3)
    self.assertLen(out["ece"]["values"], 3)


if __name__ == "__main__":
  absltest.main()
