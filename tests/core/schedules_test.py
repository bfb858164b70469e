"""Schedule values at hand-picked steps, as chex variants with and without jit (the step
calls them with a traced step; configs and tests call them eagerly)."""

from absl.testing import absltest
import chex
import ml_collections
import numpy as np

from churn_jax.core import schedules


def values(fn, steps):
  return np.array([float(fn(s)) for s in steps])


class SchedulesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_linear_rampup(self):
    fn = self.variant(schedules.linear_rampup(2.0, 10))
    np.testing.assert_allclose(values(fn, [0, 5, 10, 50]), [0.0, 1.0, 2.0, 2.0], atol=1e-6)
    fn = self.variant(schedules.linear_rampup(1.0, 4, start_step=10))
    np.testing.assert_allclose(values(fn, [0, 9, 10, 12, 14, 100]), [0, 0, 0, 0.5, 1, 1],
                               atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_step_burnin(self):
    fn = self.variant(schedules.step_burnin(3.0, 5))
    np.testing.assert_allclose(values(fn, [0, 4, 5, 6]), [0, 0, 3, 3])
    np.testing.assert_allclose(values(self.variant(schedules.step_burnin(3.0, 0)), [0, 10]),
                               [3, 3])

  @chex.variants(with_jit=True, without_jit=True)
  def test_warmup_step_decay(self):
    fn = self.variant(schedules.warmup_step_decay(1.0, 10, (20, 30), 0.1))
    np.testing.assert_allclose(values(fn, [0, 5, 10, 19, 20, 29, 30, 100]),
                               [0, 0.5, 1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-5, atol=1e-7)
    fn = self.variant(schedules.warmup_step_decay(0.5, 0, (3,), 0.5))
    np.testing.assert_allclose(values(fn, [0, 2, 3, 9]), [0.5, 0.5, 0.25, 0.25])

  @chex.variants(with_jit=True, without_jit=True)
  def test_from_config(self):
    self.assertEqual(float(self.variant(schedules.from_config(0.3, 100))(7)), np.float32(0.3))
    cfg = ml_collections.ConfigDict(dict(kind="linear_rampup", value=1.0, rampup_fraction=0.25))
    np.testing.assert_allclose(
        values(self.variant(schedules.from_config(cfg, 400)), [0, 50, 100, 200]),
        [0, 0.5, 1, 1], atol=1e-6)
    cfg = dict(kind="step_burnin", value=2.0, burnin_steps=3)
    np.testing.assert_allclose(values(self.variant(schedules.from_config(cfg, 400)), [2, 3]),
                               [0, 2])

  def test_bad_kind(self):
    with self.assertRaisesRegex(ValueError, "unknown schedule kind 'cosine'"):
      schedules.from_config(dict(kind="cosine", value=1.0), 10)


if __name__ == "__main__":
  absltest.main()
