"""The method registry: every kind builds and runs as the trainer runs it, deploys the member
or mean it declares, and bad method entries are refused (split from methods_test.py)."""

from absl.testing import absltest
import jax
import numpy as np

from churn_jax import methods
from churn_jax.configs import config_lib
from tests import fast_jit
from tests.methods.methods_test import build, np_softmax


class RegistryTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.rng = np.random.default_rng(0)

  def test_build_every_kind_and_run_it_like_the_trainer(self):
    runs, b, k = 2, 5, 4
    for kind in methods.METHOD_KINDS:
      with self.subTest(kind=kind):
        method = build(kind=kind, beta=0.1, teacher="ensemble",
                       **({"ensemble_size": 2} if kind == "be_distill" else {}))
        self.assertEqual(method.name, kind)
        m = method.num_members
        heads = (method.model_ensemble_size,) if method.model_ensemble_size > 1 else ()
        logits = self.rng.normal(size=(runs, m, b) + heads + (k,)).astype(np.float32)
        labels = self.rng.integers(0, k, size=(runs, b))
        # What the trainer passes beyond the logits (a 2-member teacher here).
        extra = {name: self.rng.normal(size=(runs, 2, b, k)).astype(np.float32)
                 for name in ("teacher_logits", "peer_logits", "aux_teacher_logits")}
        extra["aux_logits"] = logits
        probs = np_softmax(logits)

        @fast_jit.jit
        def run(logits, labels, step, extra, probs, method=method):
          # Exactly how step.py calls the loss: mapped over runs, step shared (and traced).
          values, metrics = jax.vmap(method.loss, in_axes=(0, 0, None, 0))(
              logits, labels, step, extra)
          # Run 0 alone: the unmapped loss on its slice.
          extra0 = jax.tree_util.tree_map(lambda a: a[0], extra)
          value0 = method.loss(logits[0], labels[0], step, extra0)[0]
          return values, metrics, value0, method.deployed_probs(probs)

        values, metrics, value0, deployed = jax.tree_util.tree_map(
            np.asarray, run(logits, labels, 3, extra, probs))
        self.assertEqual(values.shape, (runs,))
        self.assertTrue(np.all(np.isfinite(values)))
        for name, v in metrics.items():
          self.assertEqual(v.shape, (runs,), name)
        # Runs never see each other: run 0's loss equals the unmapped loss on its slice.
        np.testing.assert_allclose(values[0], value0, rtol=1e-5)
        flat = probs.mean(3) if heads else probs  # A BatchEnsemble model deploys its mean.
        expected = flat[:, 0] if method.prediction == "member0" else flat.mean(1)
        np.testing.assert_allclose(deployed, expected, rtol=1e-6)

  def test_deployed_probs(self):
    probs = np_softmax(self.rng.normal(size=(2, 3, 4, 5)))
    ens = build(kind="ensemble", num_members=3)
    mut = build(kind="mutual", num_members=3)
    got_ens, got_mut = fast_jit.jit(
        lambda p: (ens.deployed_probs(p), mut.deployed_probs(p)))(probs)
    np.testing.assert_allclose(got_ens, probs.mean(1), rtol=1e-6)
    np.testing.assert_allclose(got_mut, probs[:, 0], rtol=1e-6)

  def test_default_method_configs_build(self):
    for name, entry in config_lib.method_configs(0.2, 0.05, 1.0, 0.5).items():
      self.assertEqual(methods.build(name, entry, 100).name, name)

  def test_bad_configs(self):
    for kwargs, pattern in [(dict(kind="anti_distill", beta=0.1, outputs="feats"), "outputs"),
                            (dict(kind="anti_distill", beta=0.1, num_members=1), "num_members"),
                            (dict(kind="mutual", num_members=1), "num_members"),
                            (dict(kind="codistill_ce", num_members=1), "num_members"),
                            (dict(kind="entropy", beta=0.1, top_k=1), "top_k"),
                            (dict(kind="nope"), "unknown kind")]:
      with self.subTest(**{k: str(v) for k, v in kwargs.items()}):
        with self.assertRaisesRegex(ValueError, pattern):
          build(**kwargs)


if __name__ == "__main__":
  absltest.main()
