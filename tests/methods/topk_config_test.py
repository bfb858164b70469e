"""The many-class multi-view config's top_k reaches the loss the trainer applies.

methods_test.py pins top_k from a method entry to the loss (test_regularized_top_k and the
codistill top-3 case); this pins experiments/multiview.py:classes=100 -> its entries ->
methods.build -> loss, against numpy on 100-class logits (top 10 renormalised).
"""

from absl.testing import absltest
import jax.numpy as jnp
import numpy as np

from churn_jax import methods
from experiments import multiview


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_parts(z, y, k):
  """Per-member mean CE, top-k entropy and top-k SKL to uniform (z: (M, B, K))."""
  logp = np_log_softmax(z)
  ce = -np.take_along_axis(logp, y[None, :, None], -1)[..., 0].mean(-1)
  top = np.sort(z, -1)[..., -k:]
  q = np.exp(np_log_softmax(top))
  ent = -(q * np.log(q)).sum(-1).mean(-1)
  u = 1.0 / k
  skl = ((q * np.log(q / u)).sum(-1) + (u * np.log(u / q)).sum(-1)).mean(-1)
  return ce, ent, skl


class TopKConfigTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.z = (rng.normal(size=(2, 6, 100)) * 3).astype(np.float32)
    self.y = rng.integers(0, 100, 6)

  def loss(self, config, name, members, step):
    method = methods.build(name, config.method_configs[name], config.num_train_steps)
    return float(method.loss(jnp.asarray(self.z[:members]), self.y, step)[0])

  def test_regularisers_on_the_top_10(self):
    config = multiview.get_config("classes=100")
    self.assertEqual(config.data.num_classes, 100)
    ce, ent, skl = np_parts(self.z.astype(np.float64), self.y, 10)
    e, s = config.method_configs.entropy.beta, config.method_configs.skl.beta
    np.testing.assert_allclose(self.loss(config, "entropy", 1, 0), (1 - e) * ce[0] + e * ent[0],
                               rtol=1e-5)
    np.testing.assert_allclose(self.loss(config, "skl", 1, 0), (1 - s) * ce[0] - s * skl[0],
                               rtol=1e-5)
    # Eq. 19 after its ramp: both members' top-10 entropy, beta 1 on their SKL.
    logp = np_log_softmax(self.z.astype(np.float64))
    p = np.exp(logp)
    pair = ((p[0] * (logp[0] - logp[1])).sum(-1) + (p[1] * (logp[1] - logp[0])).sum(-1)).mean()
    cfg = config.method_configs.codistill_entropy
    e, beta = cfg.entropy_beta.value, cfg.beta.value
    np.testing.assert_allclose(
        self.loss(config, "codistill_entropy", 2, config.num_train_steps),
        (1 - e) * ce.sum() + e * ent.sum() + beta * pair, rtol=1e-5)

  def test_topk_0_is_every_class(self):
    config = multiview.get_config("classes=100,topk=0")
    ce, ent, _ = np_parts(self.z.astype(np.float64), self.y, 100)
    e = config.method_configs.entropy.beta
    np.testing.assert_allclose(self.loss(config, "entropy", 1, 0), (1 - e) * ce[0] + e * ent[0],
                               rtol=1e-5)


if __name__ == "__main__":
  absltest.main()
