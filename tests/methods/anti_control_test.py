"""Anti-distillation's control: the shared-batch 2-ensemble is anti-distillation at lambda 0
(same loss, same gradients, same data); the logits variant penalises the logits' squared
batch correlation (numpy in the test). The losses run under jit with the step traced, as the
trainer runs them: one program per method, not one per primitive (tests/fast_jit.py)."""

from absl.testing import absltest
import jax
import numpy as np

from churn_jax import methods
from churn_jax.configs import config_lib
from tests import fast_jit


def _pearson_sq(a, b):
  a = a - a.mean(0)
  b = b - b.mean(0)
  rho = (a * b).mean(0) / np.sqrt(((a * a).mean(0) + 1e-12) * ((b * b).mean(0) + 1e-12))
  return np.mean(rho ** 2)


class AntiControlTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.cfgs = config_lib.all_method_configs(0.1, 0.01, 1.0)
    rng = np.random.default_rng(0)
    self.logits = (rng.normal(size=(2, 16, 5)) * 3).astype(np.float32)
    self.labels = rng.integers(0, 5, 16)

  def _loss(self, name, beta=None):
    cfg = self.cfgs[name].copy_and_resolve_references()
    if beta is not None:
      cfg.beta = beta
    m = methods.build(name, cfg, 100)
    # (loss, d loss / d logits) at the logits and a traced step, in one program.
    return m, fast_jit.jit(jax.value_and_grad(
        lambda z, step: m.loss(z, self.labels, step, {})[0]))

  def test_control_is_anti_distillation_at_lambda_zero(self):
    control, control_loss = self._loss("ensemble2_shared")
    self.assertEqual(control.member_data, "shared")
    self.assertEqual(control.prediction, "ensemble_mean")
    control_value, control_grad = control_loss(self.logits, np.int32(0))
    for name in ("anti_distill", "anti_distill_logits"):
      anti, anti_loss = self._loss(name, 0.0)
      self.assertEqual((anti.member_data, anti.prediction, anti.num_members),
                       (control.member_data, control.prediction, control.num_members))
      anti_value, anti_grad = anti_loss(self.logits, np.int32(0))
      np.testing.assert_allclose(anti_value, control_value, rtol=1e-6)
      np.testing.assert_allclose(anti_grad, control_grad, rtol=1e-6)
    self.assertEqual(self.cfgs.ensemble2.member_data, "independent")  # The confounded one.

  def test_penalty_on_probabilities_and_on_logits(self):
    z = np.asarray(self.logits, np.float64)
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    _, zero = self._loss("anti_distill", 0.0)
    for name, out in (("anti_distill", probs), ("anti_distill_logits", z)):
      _, loss = self._loss(name, 2.0)
      np.testing.assert_allclose(float(loss(self.logits, np.int32(0))[0])
                                 - float(zero(self.logits, np.int32(0))[0]),
                                 2.0 * _pearson_sq(out[0], out[1]), rtol=1e-4, err_msg=name)


if __name__ == "__main__":
  absltest.main()
