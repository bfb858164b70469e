"""Distillation without perturbation uses the configured temperature (issue 25 item 7):
the loss against numpy's (1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T). The loss runs under jit
with the step traced, as the trainer runs it (one program, not one per primitive)."""

from absl.testing import absltest
import ml_collections
import numpy as np

from churn_jax import methods
from tests import fast_jit


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


class DistillTemperatureTest(absltest.TestCase):

  def test_loss_uses_the_configured_temperature(self):
    rng = np.random.default_rng(0)
    student = rng.normal(size=(1, 8, 4)) * 2  # float64: the numpy reference.
    teacher = rng.normal(size=(2, 8, 4)) * 2
    labels = rng.integers(0, 4, 8)
    for t in (1.0, 3.0):
      cfg = ml_collections.ConfigDict(dict(kind="distill", teacher="ensemble2", alpha=0.7,
                                           temperature=t))
      m = methods.build("kd", cfg, 10)
      value, _ = fast_jit.jit(m.loss)(student.astype(np.float32), labels, np.int32(0),
                                      {"teacher_logits": teacher.astype(np.float32)})
      ce = -_log_softmax(student[0])[np.arange(8), labels].mean()
      target = np.exp(_log_softmax(teacher / t)).mean(0)
      kl = (target * (np.log(target) - _log_softmax(student[0] / t))).sum(-1).mean()
      np.testing.assert_allclose(float(value), 0.3 * ce + 0.7 * t ** 2 * kl, rtol=1e-5,
                                 err_msg=f"T={t}")


if __name__ == "__main__":
  absltest.main()
