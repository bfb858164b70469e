"""BatchEnsemble layers and models, and the BE student distilled member to member."""

from absl.testing import absltest, parameterized
import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np

from churn_jax import methods, models
from churn_jax.configs import config_lib
from churn_jax.methods import be_distill
from churn_jax.models import batchensemble
from churn_jax.study import train
from tests import fast_jit, testing


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def be_variables_from_shared(shared, be_abstract, size, bias_offsets=None):
  """BE variables whose shared weights are `shared`'s, fast weights 1 and every member's
  bias the shared layer's bias (plus `bias_offsets[e]` for member e when given). numpy:
  eager jnp would compile a program per op and shape."""
  flat_shared = flax.traverse_util.flatten_dict(shared)
  out = {}
  for path, leaf in flax.traverse_util.flatten_dict(be_abstract).items():
    if path[-1] in ("fast_in", "fast_out"):
      out[path] = np.ones(leaf.shape, leaf.dtype)
    elif path[-1] == "ensemble_bias":
      bias = np.asarray(flat_shared[path[:-1] + ("bias",)])
      offsets = np.zeros(size, bias.dtype) if bias_offsets is None else bias_offsets
      out[path] = np.stack([bias + o for o in offsets]).astype(bias.dtype)
    else:
      out[path] = flat_shared[path]
  return flax.traverse_util.unflatten_dict(out)


def apply(model, training):
  """Jitted apply returning (logits, batch_stats): one compile instead of eager dispatch,
  with tests/fast_jit.py's options (the train step's -O1 compiled the WRN's four applies in
  about twice the CPU time; the equalities below hold under both)."""
  return fast_jit.jit(lambda v, x: model.apply(v, x, train=training, mutable=["batch_stats"]))


class BatchEnsembleLayersTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("mlp", "mlp", dict(hidden=(7, 5)), (3, 12)),
      ("wrn10_1", "wrn", dict(depth=10, width=1), (3, 4, 4, 2)),
  )
  def test_unit_fast_weights_equal_the_shared_model(self, name, kwargs, shape):
    size = 3
    shared_model = models.get_model(name, 4, **kwargs)
    be_model = models.get_model(models.batch_ensemble_variant(name), 4, ensemble_size=size,
                                **kwargs)
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    shared = fast_jit.jit(shared_model.init)(
        jax.random.key(0), x)
    abstract = jax.eval_shape(be_model.init, jax.random.key(1), x)
    be_vars = dict(shared, params=be_variables_from_shared(shared["params"],
                                                           abstract["params"], size))
    chex.assert_trees_all_equal_shapes(be_vars, abstract)
    # The shared model on the tiled batch runs the same ops on the same shapes: in evaluation
    # bitwise equal. In training, XLA fuses BatchNorm's batch reductions differently around
    # the (unit) fast-weight products, so the sums are ordered differently: close, not equal.
    tiled = batchensemble.to_members(x, size)
    for training in (False, True):
      got, got_stats = apply(be_model, training)(be_vars, x)
      want, want_stats = apply(shared_model, training)(shared, tiled)
      chex.assert_shape(got, (shape[0], size, 4))
      check = chex.assert_trees_all_close if training else chex.assert_trees_all_equal
      tol = dict(rtol=1e-4, atol=1e-5) if training else {}
      check(got, batchensemble.from_members(want, size), **tol)
      check(got_stats, want_stats, **tol)
    # Every member is the shared model on the plain batch (up to the last float bit: XLA may
    # block a matmul differently for B and E*B rows).
    want = np.asarray(apply(shared_model, False)(shared, x)[0])
    got = np.asarray(apply(be_model, False)(be_vars, x)[0])
    for e in range(size):
      chex.assert_trees_all_close(got[:, e], want, rtol=1e-6, atol=1e-6)
    # Member biases are per member: an offset on member 1's classifier bias moves only it.
    offsets = np.array([0.0, 2.0, 0.0])
    shifted = dict(be_vars, params=be_variables_from_shared(shared["params"],
                                                            abstract["params"], size, offsets))
    flat = flax.traverse_util.flatten_dict(shifted["params"])
    hidden_biases = [p for p in flat if p[-1] == "ensemble_bias" and p[0] != "logits"]
    for p in hidden_biases:  # Keep hidden layers equal: only the classifier bias differs.
      flat[p] = np.stack([flat[p][0]] * size)
    shifted["params"] = flax.traverse_util.unflatten_dict(flat)
    out = np.asarray(apply(be_model, False)(shifted, x)[0])
    chex.assert_trees_all_close(out[:, 1], want + 2.0,
                                rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_equal(out[:, 0], out[:, 2])

  def test_fast_weights_modulate_each_member(self):
    # y_e = ((x * r_e) W) * s_e + b_e for a BEDense, against numpy.
    rng = np.random.default_rng(1)
    size, b, c_in, c_out = 3, 4, 5, 2
    layer = batchensemble.BEDense(c_out, ensemble_size=size)
    x = rng.normal(size=(size * b, c_in)).astype(np.float32)
    # Jitted init and apply: one program each, not one per primitive.
    v = fast_jit.jit(layer.init)(jax.random.key(0), x)
    p = jax.tree_util.tree_map(np.asarray, v["params"])
    self.assertEqual(set(p), {"kernel", "fast_in", "fast_out", "ensemble_bias"})
    p["ensemble_bias"] = rng.normal(size=(size, c_out)).astype(np.float32)
    got = fast_jit.jit(layer.apply)({"params": p}, x)
    want = np.concatenate([((x[e * b:(e + 1) * b] * p["fast_in"][e]) @ p["kernel"])
                           * p["fast_out"][e] + p["ensemble_bias"][e] for e in range(size)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Fast weights start around 1 (N(1, 0.5^2)), not all equal: members differ at init.
    self.assertAlmostEqual(float(np.mean(p["fast_in"])), 1.0, delta=0.5)
    self.assertGreater(float(np.std(p["fast_in"])), 0.1)

  def test_shared_layer_takes_no_bias(self):
    with self.assertRaisesRegex(ValueError, "takes no bias"):
      batchensemble.BEDense(3, use_bias=True).init(jax.random.key(0), jnp.ones((2, 4)))

  def test_no_variant(self):
    with self.assertRaisesRegex(ValueError, "'lenet5' has no BatchEnsemble variant"):
      models.batch_ensemble_variant("lenet5")
    self.assertEqual(models.batch_ensemble_variant("wrn28_10"), "be_wrn28_10")


def np_member_loss(student, labels, teacher, alpha, temperature):
  """Reference: mean over members i of (1-a) CE(y, s_i) + a T^2 KL(t_i^T || s_i^T)."""
  total = 0.0
  size = student.shape[1]
  for i in range(size):
    s = student[:, i].astype(np.float64)
    t = teacher[i].astype(np.float64)
    ce = -np.mean(np_log_softmax(s)[np.arange(len(labels)), labels])
    log_pt, log_ps = np_log_softmax(t / temperature), np_log_softmax(s / temperature)
    kl = np.mean(np.sum(np.exp(log_pt) * (log_pt - log_ps), -1))
    total += (1 - alpha) * ce + alpha * temperature ** 2 * kl
  return total / size


class BEDistillLossTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.rng = np.random.default_rng(0)
    self.method = methods.build("be", dict(kind="be_distill", teacher="ensemble4",
                                           ensemble_size=3, alpha=0.4, temperature=2.0), 100)
    self.student = self.rng.normal(size=(1, 5, 3, 4)).astype(np.float32) * 2
    self.teacher = self.rng.normal(size=(3, 5, 4)).astype(np.float32) * 2
    self.labels = self.rng.integers(0, 4, size=5)

  def loss(self, student, teacher):
    return self.method.loss(jnp.asarray(student), self.labels, 0,
                            {"teacher_logits": jnp.asarray(teacher)})

  def test_member_i_learns_from_teacher_member_i(self):
    # ((loss, metrics), d loss / d student) in one program, the step traced as the trainer's.
    loss_and_grad = fast_jit.jit(jax.value_and_grad(
        lambda s, t, step: self.method.loss(s, self.labels, step, {"teacher_logits": t}),
        has_aux=True))
    (value, metrics), g0 = loss_and_grad(self.student, self.teacher, 0)
    np.testing.assert_allclose(value, np_member_loss(self.student[0], self.labels, self.teacher,
                                                     0.4, 2.0), rtol=1e-5)
    self.assertEqual(set(metrics), {"ce", "kd", "alpha"})
    # Permuting the teacher's members changes the loss (a mean-of-teachers target would not).
    (permuted, _), _ = loss_and_grad(self.student, self.teacher[::-1], 0)
    self.assertGreater(abs(float(permuted) - float(value)), 1e-3)
    # The gradient on student member 0 depends on teacher member 0 only.
    changed = self.teacher.copy()
    changed[1] = self.rng.normal(size=changed[1].shape)  # A new distribution for member 1.
    g1 = loss_and_grad(self.student, changed, 0)[1]
    g0, g1 = np.asarray(g0), np.asarray(g1)
    chex.assert_trees_all_close(g0[:, :, 0], g1[:, :, 0], rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(g0[:, :, 2], g1[:, :, 2], rtol=1e-6, atol=1e-7)
    self.assertGreater(np.abs(g0[:, :, 1] - g1[:, :, 1]).max(), 1e-4)

  def test_boundary_shapes_and_teacher_size(self):
    with self.assertRaises(AssertionError):  # (M, B, K) without the member axis.
      self.method.loss(jnp.asarray(self.student[:, :, 0]), self.labels, 0,
                       {"teacher_logits": jnp.asarray(self.teacher)})
    with self.assertRaisesRegex(ValueError, "student has 3 members but the teacher 2"):
      self.loss(self.student, self.teacher[:2])

  def test_replace_keeps_the_boundary_checks_current(self):
    import dataclasses  # pylint: disable=g-import-not-at-top
    wider = dataclasses.replace(self.method, model_ensemble_size=4)
    self.assertIs(wider.loss.unchecked, self.method.loss.unchecked)
    with self.assertRaises(AssertionError):  # 3 members no longer fit the (1, B, 4, K) contract.
      self.loss_of(wider, self.student, self.teacher)

  def loss_of(self, method, student, teacher):
    return method.loss(jnp.asarray(student), self.labels, 0,
                       {"teacher_logits": jnp.asarray(teacher)})

  def test_deployed_prediction_is_the_mean_of_the_members(self):
    logits = self.rng.normal(size=(2, 1, 6, 3, 4)).astype(np.float32)
    probs = np.exp(np_log_softmax(logits))
    chex.assert_trees_all_close(fast_jit.jit(self.method.deployed_probs)(probs),
                                probs[:, 0].mean(axis=2), rtol=1e-6)

  def test_config_entry(self):
    configs = config_lib.all_method_configs(0.2, 0.05, 1.0)
    entry = configs.be_distill
    method = methods.build("be_distill", entry, 100)
    teacher = methods.build(entry.teacher, configs[entry.teacher], 100)
    self.assertEqual((method.num_members, method.model_ensemble_size), (1, teacher.num_members))
    self.assertEqual(method.student_model("wrn28_10", {}), ("be_wrn28_10", {"ensemble_size": 4}))
    self.assertEqual(entry.temperature, configs.ens_distill.temperature)


class BEDistillValidationTest(absltest.TestCase):

  def config(self, model, ensemble_size=2):
    config = testing.tiny_config(model=model, methods="be")
    config.method_configs.ensemble2 = dict(kind="ensemble", num_members=2)
    config.method_configs.be = dict(kind="be_distill", teacher="ensemble2",
                                    ensemble_size=ensemble_size)
    return config

  def test_errors_before_anything_trains(self):
    from churn_jax.study import validate  # pylint: disable=g-import-not-at-top
    validate.validate_config(self.config(dict(name="mlp", hidden=(8,))))
    with self.assertRaisesRegex(ValueError, "'conv1d' has no BatchEnsemble variant"):
      validate.validate_config(self.config(dict(name="conv1d")))
    with self.assertRaisesRegex(ValueError, "3 student members need a teacher with as many "
                                "members; 'ensemble2' has 2"):
      validate.validate_config(self.config(dict(name="mlp"), ensemble_size=3))


class BEDistillTrainerTest(absltest.TestCase):

  def test_trained_through_the_trainer_member_to_member(self):
    config = testing.tiny_config(num_runs=2, num_steps=3, model=dict(name="mlp", hidden=(8,)))
    config.method_configs.ensemble2 = dict(kind="ensemble", num_members=2)
    config.method_configs.be = dict(kind="be_distill", teacher="ensemble2", ensemble_size=2,
                                    alpha=1.0, temperature=2.0)
    ds = testing.tiny_dataset()
    build = lambda n: methods.build(n, config.method_configs[n], 3)
    teacher = train.train_method(config, ds, build("ensemble2"))
    student = train.train_method(config, ds, build("be"), teacher=teacher.state)
    # One BE model per run (M = 1) with 2 members; the shared kernel is one MLP's.
    kernel = student.state.params["dense_0"]["kernel"]
    chex.assert_shape(kernel, (2, 1, 12, 8))
    chex.assert_shape(student.state.params["dense_0"]["fast_in"], (2, 1, 2, 12))
    chex.assert_shape(student.member_probs, (2, 1, ds.num_test, 2, ds.num_classes))
    deployed = build("be").deployed_probs(student.member_probs)
    chex.assert_trees_all_close(deployed, student.member_probs[:, 0].mean(axis=2), rtol=1e-6)
    # Swapping the teacher's members changes what each student member learns.
    swapped = teacher.state.replace(
        params=jax.tree_util.tree_map(lambda a: a[:, ::-1], teacher.state.params))
    other = train.train_method(config, ds, build("be"), teacher=swapped)
    # (With a mean-of-members target, as kind "distill" uses, the swap would change nothing.)
    self.assertGreater(float(np.abs(other.member_probs - student.member_probs).max()), 1e-5)


if __name__ == "__main__":
  absltest.main()
