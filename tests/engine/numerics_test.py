"""The numerics knobs of the step (engine/numerics.py), each against the plain float32 step.

compute_dtype=bfloat16: close to float32, with float32 parameters, optimizer state, BatchNorm
statistics, losses and probabilities, and bfloat16 inside the model. remat: bitwise equal.
microbatches: equal to float tolerance. steps_per_loop: bitwise equal to single steps.
matmul_precision: reaches the traced dot products.
"""

from absl.testing import absltest, parameterized
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from churn_jax import methods, models
from churn_jax.engine import step as step_lib
from churn_jax.engine.numerics import Numerics
from tests import fast_jit
from tests import testing

_RESNET8 = dict(name="resnet_cifar", depth=8)


def _setup(model_cfg, method="codistill", runs=2, batch=8, steps=3, image=False):
  """A model, method, optimizer, fresh state factory and `steps` batches of shape (R, B, ...)."""
  cfg = dict(model_cfg)
  ds = testing.tiny_dataset(image=image)
  model = models.get_model(cfg.pop("name"), ds.num_classes, **cfg)
  config = testing.tiny_config(num_runs=runs)
  entry = (ml_collections.ConfigDict(dict(kind="ensemble", num_members=2))
           if method == "ensemble2" else config.method_configs[method])
  built = methods.build(method, entry, 10)
  tx = step_lib.make_optimizer(config.optimizer, config.lr)
  keys = jax.random.split(jax.random.PRNGKey(0), runs * built.num_members).reshape(
      runs, built.num_members, 2)
  init = step_lib.init_state(model, tx, keys, jax.random.split(jax.random.PRNGKey(1), runs),
                             jnp.zeros((1,) + ds.input_shape))
  # Initialised (and compiled) once; each training gets its own copy, as the step donates it.
  fresh = lambda: jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), init)
  rng = np.random.default_rng(0)
  batches = [(jnp.asarray(rng.normal(size=(runs, batch) + ds.input_shape), jnp.float32),
              jnp.asarray(rng.integers(0, ds.num_classes, (runs, batch)), jnp.int32))
             for _ in range(steps)]
  return model, built, tx, fresh, batches


def _train(model, method, tx, fresh, batches, numerics=None, strategy="vmap", options=None):
  step = step_lib.make_train_step(model, method, tx, strategy, numerics=numerics,
                                  options=options)
  state = fresh()
  for batch in batches:
    state, metrics = step(state, batch, {})
  return state, metrics


def _leaves_equal(test, a, b):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class MixedPrecisionTest(parameterized.TestCase):

  # Update tolerance: largest difference over the largest fp32 update, per leaf. Measured:
  # MLP < 0.1; ResNet-8 on 8 examples of 4x3 pixels up to 0.30 (BatchNorm over a tiny batch
  # subtracts nearly equal bf16 numbers in its gradient), so it is also held to direction.
  # The ResNet as one model (baseline, one run): every (run, member) of a stack takes the
  # same path, which the MLP case covers with 2 runs x 2 members; each ResNet copy in the
  # program costs ~5 s of XLA:CPU compile.
  @parameterized.parameters((dict(name="mlp", hidden=(32,)), False, 0.1, "codistill", 2),
                            (_RESNET8, True, 0.5, "baseline", 1))
  def test_bf16_step_is_close_to_fp32_and_keeps_fp32_state(self, model_cfg, image, tol, method,
                                                           runs):
    model, method, tx, fresh, batches = _setup(model_cfg, method, image=image, steps=2,
                                               runs=runs)
    ref, ref_metrics = _train(model, method, tx, fresh, batches)
    bf, bf_metrics = _train(model, method, tx, fresh, batches, Numerics("bfloat16"))
    # Master weights, optimizer state and BatchNorm statistics stay float32.
    for tree in (bf.params, bf.opt_state, bf.batch_stats):
      for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
          self.assertEqual(leaf.dtype, jnp.float32)
    for value in jax.tree_util.tree_leaves(bf_metrics):
      self.assertEqual(value.dtype, jnp.float32)
    # bf16 keeps 8 bits of mantissa: losses agree to ~1e-2 relative, parameters moved alike.
    np.testing.assert_allclose(bf_metrics["loss"], ref_metrics["loss"], rtol=3e-2)
    init = fresh().params
    for p0, p_ref, p_bf in zip(*(jax.tree_util.tree_leaves(t) for t in (init, ref.params,
                                                                        bf.params))):
      move_ref, move_bf = np.asarray(p_ref - p0).ravel(), np.asarray(p_bf - p0).ravel()
      scale = np.abs(move_ref).max() + 1e-12
      self.assertLess(np.abs(move_bf - move_ref).max() / scale, tol)
      cosine = move_ref @ move_bf / (np.linalg.norm(move_ref) * np.linalg.norm(move_bf) + 1e-30)
      self.assertGreater(cosine, 0.8)
    # ... and they do differ: the bf16 path really ran.
    self.assertFalse(all(np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(ref.params), jax.tree_util.tree_leaves(bf.params))))

  def test_bf16_reaches_the_matmuls_and_probabilities_are_fp32(self):
    model, method, tx, fresh, batches = _setup(dict(name="mlp", hidden=(32,)))
    state = fresh()
    step = step_lib.make_train_step(model, method, tx, "vmap", numerics=Numerics("bfloat16"))
    text = str(step.trace(state, batches[0], {}).jaxpr)
    self.assertIn("dot_general", text)
    dots = [line for line in text.splitlines() if "dot_general" in line]
    self.assertTrue(any("bf16" in line for line in dots), dots[:3])
    predict = step_lib.make_predict(model, "vmap", Numerics("bfloat16"))
    probs = predict(state, batches[0][0][0])
    self.assertEqual(probs.dtype, jnp.float32)
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, rtol=1e-5)
    fp32 = step_lib.make_predict(model, "vmap")(state, batches[0][0][0])
    np.testing.assert_allclose(probs, fp32, atol=3e-2)

  def test_matmul_precision_reaches_the_traced_step(self):
    model, method, tx, fresh, batches = _setup(dict(name="mlp", hidden=(32,)))
    state = fresh()
    text = lambda n: str(step_lib.make_train_step(
        model, method, tx, "vmap", numerics=n).trace(state, batches[0], {}).jaxpr)
    self.assertIn("precision=(Precision.HIGHEST", text(Numerics(matmul_precision="highest")))
    self.assertNotIn("Precision.HIGHEST", text(Numerics()))


class RematAndMicrobatchTest(parameterized.TestCase):

  @parameterized.parameters((dict(name="mlp", hidden=(32,)), False, "vmap", "codistill", 2),
                            (_RESNET8, True, "loop", "baseline", 1))
  def test_remat_is_bitwise_equal(self, model_cfg, image, strategy, method, runs):
    model, method, tx, fresh, batches = _setup(model_cfg, method, image=image, steps=2,
                                               runs=runs)
    # Bitwise at the shipped options (the tests' cheaper ones are not those: conftest.py).
    shipped = fast_jit.shipped_step_options()
    ref, _ = _train(model, method, tx, fresh, batches, strategy=strategy, options=shipped)
    out, _ = _train(model, method, tx, fresh, batches, Numerics(remat=True), strategy, shipped)
    _leaves_equal(self, (ref.params, ref.batch_stats, ref.opt_state),
                  (out.params, out.batch_stats, out.opt_state))

  @parameterized.parameters("codistill", "ensemble2")
  def test_microbatches_equal_the_whole_batch(self, method_name):
    model, method, tx, fresh, batches = _setup(dict(name="mlp", hidden=(32,)), method_name)
    if method.streams_per_run > 1:  # Independent members: one stream per (run, member).
      batches = [(jnp.repeat(x, 2, axis=0), jnp.repeat(y, 2, axis=0)) for x, y in batches]
    ref, ref_m = _train(model, method, tx, fresh, batches)
    out, out_m = _train(model, method, tx, fresh, batches, Numerics(microbatches=4))
    np.testing.assert_allclose(out_m["loss"], ref_m["loss"], rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(ref.params), jax.tree_util.tree_leaves(out.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # A wrong scale (sum instead of mean of the slices) would move them 4x as far.
    first = jax.tree_util.tree_leaves(fresh().params)[0]
    self.assertGreater(np.abs(np.asarray(jax.tree_util.tree_leaves(ref.params)[0]
                                         - first)).max(), 1e-4)


class StepsPerLoopTest(parameterized.TestCase):

  @parameterized.parameters(("codistill", "vmap"), ("baseline", "loop"))
  def test_block_of_k_steps_is_bitwise_k_single_steps(self, method_name, strategy):
    model, method, tx, fresh, batches = _setup(dict(name="mlp", hidden=(32,)), method_name,
                                               steps=4)
    ref, ref_m = _train(model, method, tx, fresh, batches, strategy=strategy)
    block = step_lib.make_train_step(model, method, tx, strategy, steps=4)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *batches)
    out, out_m = block(fresh(), stacked, {})
    self.assertEqual(int(out.step), 4)
    _leaves_equal(self, (ref.params, ref.opt_state, ref.rng, ref.first_nonfinite),
                  (out.params, out.opt_state, out.rng, out.first_nonfinite))
    _leaves_equal(self, ref_m, out_m)  # The metrics of the block's last step.


if __name__ == "__main__":
  absltest.main()
