"""The learning-rate panel of a study with a constant schedule (no warm-up, no decay: the
multi-view configs) has one value per step; it was a scalar and failed launch/main.py."""

from absl.testing import absltest
import numpy as np

from churn_jax.study import regenerate


class ConstantScheduleTest(absltest.TestCase):

  def test_one_value_per_step(self):
    lr = {"base": 2.0, "warmup_steps": 0, "decay_steps": [], "decay_factor": 0.1}
    series = regenerate._schedule_series({"lr": lr, "num_train_steps": 5})  # pylint: disable=protected-access
    np.testing.assert_array_equal(series.x, np.arange(1, 6))
    self.assertEqual(np.shape(series.y), (5,))  # A scalar would broadcast in the next check.
    np.testing.assert_array_equal(series.y, np.full(5, 2.0))
    decayed = regenerate._schedule_series(  # pylint: disable=protected-access
        {"lr": dict(lr, decay_steps=[3]), "num_train_steps": 5})
    np.testing.assert_allclose(decayed.y, [2.0, 2.0, 2.0, 0.2, 0.2])


if __name__ == "__main__":
  absltest.main()
