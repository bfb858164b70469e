"""The wiring that turns the pure pieces into a study, pinned through the trainer.

Each test here failed when the line it pins was changed on purpose (listed per test): runs
initialised alike although init varies, data order ignoring the run or the member, the
ramp-up dropped from a coefficient, the learning-rate warm-up or the weight decay changed
where the optimizer is built, anti-distillation's penalty made one-sided, and an ensemble
reported by one member.
"""

import json
import os
import tempfile

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from churn_jax import methods, models
from churn_jax.data import Dataset
from churn_jax.engine import sharding, step as step_lib
from churn_jax.study import train
from experiments import mnist1d
from tests import device_child, fast_jit, testing


def np_softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


class SpySource:
  """A data source that records every batch the trainer draws from it."""

  def __init__(self, dataset: Dataset):
    self.dataset = dataset
    self.seeds, self.batches = [], []
    for key in ("name", "num_classes", "input_shape", "num_train", "num_test", "x_train",
                "test_batches"):
      setattr(self, key, getattr(dataset, key))

  def train_batches(self, batch_size, seeds, start_step=0, num_steps=None):
    self.seeds.append(list(seeds))
    for batch in self.dataset.train_batches(batch_size, seeds, start_step, num_steps):
      self.batches.append(batch)
      yield batch


def build(config, name):
  return methods.build(name, config.method_configs[name], int(config.num_train_steps))


def wiring_config(num_steps=1, vary="init,data"):
  """The tiny study with the method entries the configs ship (experiments/mnist1d.py:all)."""
  config = testing.tiny_config(num_runs=2, num_steps=num_steps)
  config.vary = vary
  config.method_configs = mnist1d.get_config("all").method_configs  # The shipped entries.
  return config


class InitAndDataTest(parameterized.TestCase):

  @parameterized.parameters("init", "data")
  def test_initial_models_and_batches_of_runs_and_members_differ_iff_they_should(self, vary):
    # Broken on purpose: member_keys(..., vary_init=True) always -> fails for "data";
    # data_seeds ignoring r -> fails for "data"; ignoring m, or the ensemble entry's
    # member_data "shared" -> fails the member assertions.
    config = wiring_config(vary=vary)
    config.lr.base = 1e-30  # One step that cannot move a float32 weight: initial models.
    seen = {}
    for name in ("baseline", "ensemble2", "codistill"):
      spy = SpySource(testing.tiny_dataset())
      out = train.train_method(config, spy, build(config, name))
      probs = out.member_probs  # (R, M, N, K): every model on the same test inputs.
      self.assertEqual(not np.array_equal(probs[0], probs[1]), vary == "init", name)
      if name != "baseline":  # Members of a run always start apart.
        self.assertFalse(np.array_equal(probs[0, 0], probs[0, 1]), name)
      x, y = spy.batches[0]  # (streams, B, ...) of step 0.
      seen[name] = y
      if name == "ensemble2":  # Stream r*M + m is member m of run r: its own data order.
        self.assertEqual(y.shape[0], 4)
        for r in (0, 1):
          self.assertFalse(np.array_equal(x[2 * r], x[2 * r + 1]))
        run_streams = x[::2]
      else:  # One batch per run, seen by all its members.
        self.assertEqual(y.shape[0], 2, name)
        run_streams = x
      self.assertEqual(not np.array_equal(run_streams[0], run_streams[1]), vary == "data", name)
    # Member 0 of the ensemble sees exactly the baseline's batches of its run.
    np.testing.assert_array_equal(seen["ensemble2"][::2], seen["baseline"])
    np.testing.assert_array_equal(seen["codistill"], seen["baseline"])

  def test_coupled_methods_share_the_batch_and_ensembles_do_not(self):
    config = wiring_config()
    for name in ("codistill", "codistill_entropy", "codistill_skl", "codistill3", "mutual",
                 "codistill_ce", "codistill_ce_stale", "anti_distill"):
      self.assertEqual((build(config, name).member_data, build(config, name).streams_per_run),
                       ("shared", 1), name)
    for name, m in (("ensemble2", 2), ("ensemble4", 4)):
      self.assertEqual((build(config, name).member_data, build(config, name).streams_per_run),
                       ("independent", m), name)


def make_alone(config, ds, strategy):
  """A function training one model by hand with the step and optimizer (the reference)."""
  model_cfg = dict(config.model)
  model = models.get_model(model_cfg.pop("name"), ds.num_classes, **model_cfg)
  tx = step_lib.make_optimizer(config.optimizer, config.lr)
  baseline = methods.build("baseline", ml_collections.ConfigDict(dict(kind="baseline")), 1)
  step = step_lib.make_train_step(model, baseline, tx, strategy)

  def train_alone(key, data_seed):
    state = step_lib.init_state(model, tx, key[None, None], jax.random.PRNGKey(0)[None],
                                jnp.zeros((1,) + ds.input_shape))
    for x, y in ds.train_batches(config.batch_size, [data_seed], 0, config.num_train_steps):
      state, _ = step(state, (jnp.asarray(x), jnp.asarray(y)), {})
    return state.params
  return train_alone


class IndependentMembersTest(parameterized.TestCase):

  @parameterized.parameters("vmap", "loop")
  def test_ensemble_members_equal_models_trained_alone(self, strategy):
    # Broken on purpose: x_per_member ignored in stack.apply_stack (every member on stream
    # 0) -> fails for member 1; stream order member-major in the step -> fails.
    config = wiring_config(num_steps=3)
    config.strategy = strategy
    ds = testing.tiny_dataset()
    out = train.train_method(config, ds, build(config, "ensemble2"))
    keys = train.member_keys(config.seed, [0, 1], 2, True)
    seeds = train.data_seeds(config.seed, [0, 1], True, 2)
    self.assertLen(set(seeds), 4)
    train_alone = make_alone(config, ds, strategy)
    for r in (0, 1):
      for m in (0, 1):
        member = jax.tree_util.tree_map(lambda a: a[r:r + 1, m:m + 1], out.state.params)
        chex.assert_trees_all_close(member, train_alone(keys[r, m], seeds[2 * r + m]),
                                    rtol=1e-4, atol=1e-5)


  @device_child.parent
  def test_independent_members_sharded_equal_unsharded(self):
    device_child.assert_passed(self, __file__)


class ChildTest(absltest.TestCase):
  """Runs in the shared child process only (tests/device_child.py), on 4 of its fake devices."""

  def setUp(self):
    super().setUp()
    self.enterContext(device_child.fast_compile())  # Both sides of each comparison at -O0.

  def test_independent_members_on_a_sharded_mesh(self):
    # The (R*M, B) streams sharded over 'run' are reshaped to (R, M, B) in the step: runs and
    # members on their own devices train exactly as on one device.
    devices = jax.devices()[:4]
    self.assertLen(devices, 4)
    config = wiring_config(num_steps=3)
    config.strategy = "vmap"
    ds = testing.tiny_dataset()
    method = build(config, "ensemble2")
    single = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), sharding.AXES)
    plain = train.train_method(config, ds, method, mesh=single)
    for shape in [(2, 2, 1), (1, 2, 2)]:
      mesh = jax.sharding.Mesh(np.asarray(devices).reshape(shape), sharding.AXES)
      sharded = train.train_method(config, ds, method, mesh=mesh)
      chex.assert_trees_all_close(sharded.state.params, plain.state.params, rtol=1e-4,
                                  atol=1e-5)


class CoefficientScheduleTest(parameterized.TestCase):
  """The coefficients applied at given steps ("coef/..." metrics) against the schedule."""

  def test_the_step_records_the_ramp_up_and_burn_in_it_applied(self):
    # Broken on purpose: rampup_fraction=0 in config_lib.method_configs; the step passing 0
    # instead of state.step to the loss -> fails.
    config = wiring_config(num_steps=100)
    ds = testing.tiny_dataset()
    value = config.method_configs.codistill.beta.value
    steps = (0, 5, 12, 25, 60)
    expected = {"codistill": lambda t: value * min(1.0, t / 25.0),  # First quarter (App. C).
                "codistill_ce": lambda t: value * (t >= 25)}         # Anil et al.'s burn-in.
    for name, schedule in expected.items():
      method = build(config, name)
      _, model, strategy, tx, _, state = train._setup(config, ds, method, None, None, None)
      train_step = step_lib.make_train_step(model, method, tx, strategy)
      batch = next(ds.train_batches(config.batch_size, train.data_seeds(0, [0, 1], True)))
      for t in steps:
        at_t = jax.tree_util.tree_map(jnp.copy, state).replace(step=jnp.asarray(t, jnp.int32))
        _, metrics = train_step(at_t, batch, {})  # The step donates its state: a copy.
        with self.subTest(name=name, step=t):
          np.testing.assert_allclose(metrics["coef/beta"], np.full(2, schedule(t)), rtol=1e-6)

  def test_shipped_entries_coefficients_per_step(self):
    # Broken on purpose: the entropy / SKL weight of regularised co-distillation not ramped.
    config = wiring_config(num_steps=100)
    ramp = lambda v, t: v * min(1.0, t / 25.0)
    rng = np.random.default_rng(0)
    y = np.arange(5) % 4
    jitted = {}  # One jitted loss per entry, the step traced as the trainer passes it.
    for name, key, schedule in [
        ("codistill_entropy", "coef/entropy_beta", lambda t: ramp(0.1, t)),
        ("codistill_entropy", "coef/beta", lambda t: ramp(1.0, t)),
        ("codistill_skl", "coef/skl_beta", lambda t: ramp(0.005, t)),
        ("codistill_skl", "coef/beta", lambda t: ramp(1.0, t)),
        ("codistill3", "coef/beta", lambda t: ramp(1.0, t)),
        ("entropy", "coef/beta", lambda t: 0.1),
        ("anti_distill", "coef/beta", lambda t: 0.5)]:
      method = build(config, name)
      loss = jitted.setdefault(name, fast_jit.jit(method.loss))
      logits = rng.normal(size=(method.num_members, 5, 4)).astype(np.float32)
      for t in (0, 10, 25, 80):
        with self.subTest(name=name, key=key, step=t):
          np.testing.assert_allclose(loss(logits, y, t)[1][key], schedule(t), rtol=1e-6,
                                     atol=1e-8)


class OptimizerTest(absltest.TestCase):

  def test_sgd_nesterov_with_weight_decay_and_warmup_equals_the_hand_update(self):
    # Broken on purpose: warmup_steps doubled in make_optimizer; weight decay dropped;
    # nesterov=False -> each fails.
    opt_cfg = ml_collections.ConfigDict(dict(name="sgd", momentum=0.9, nesterov=True,
                                             weight_decay=5e-3))
    lr_cfg = ml_collections.ConfigDict(dict(base=0.4, warmup_steps=4, decay_steps=(6,),
                                            decay_factor=0.1))
    tx = step_lib.make_optimizer(opt_cfg, lr_cfg)
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(2, 1, 3, 2)), "b": rng.normal(size=(2, 1, 2))}
    params = jax.tree_util.tree_map(lambda a: a.astype(np.float32), params)
    # As the trainer: per (run, member), under jit (one program each, not one per primitive).
    opt_state = fast_jit.jit(jax.vmap(jax.vmap(tx.init)))(params)

    @fast_jit.jit
    def apply_update(grads, opt_state, params):
      updates, opt_state = jax.vmap(jax.vmap(tx.update))(grads, opt_state, params)
      return jax.tree_util.tree_map(lambda p, u: p + u, params, updates), opt_state

    ref = {k: np.asarray(v, np.float64) for k, v in params.items()}
    trace = {k: np.zeros_like(v) for k, v in ref.items()}
    for t in range(8):
      grads = {k: rng.normal(size=v.shape) for k, v in ref.items()}
      params, opt_state = apply_update(
          jax.tree_util.tree_map(lambda a: a.astype(np.float32), grads), opt_state, params)
      lr = 0.4 * t / 4 if t < 4 else (0.4 if t < 6 else 0.04)  # Linear warm-up, x0.1 at 6.
      for k in ref:
        g = grads[k] + 5e-3 * ref[k]        # L2 weight decay added to the gradient.
        trace[k] = 0.9 * trace[k] + g        # Momentum.
        ref[k] = ref[k] - lr * (g + 0.9 * trace[k])  # Nesterov.
      for k in ref:
        np.testing.assert_allclose(params[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=f"{k} {t}")


class AntiDistillGradientTest(absltest.TestCase):

  def test_penalty_gradient_reaches_both_members_through_the_loss(self):
    # Broken on purpose: stop_gradient on the second member's outputs in the penalty -> fails.
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 6, 4))
    y = rng.integers(0, 4, size=6)
    beta = 0.7
    method = methods.build("anti", ml_collections.ConfigDict(
        dict(kind="anti_distill", num_members=2, beta=beta)), 10)
    # Under one jit with the step traced, as the trainer calls the loss (eagerly: a program
    # per primitive).
    grad = np.asarray(fast_jit.jit(jax.grad(lambda z, step: method.loss(z, y, step)[0]))(
        z.astype(np.float32), 0))

    def penalty(z):  # Squared batch correlation per class, mean over classes (numpy).
      a, b = np_softmax(z[0]), np_softmax(z[1])
      return np.mean([np.corrcoef(a[:, k], b[:, k])[0, 1] ** 2 for k in range(4)])

    numeric = np.zeros_like(z)  # Central differences in float64.
    for idx in np.ndindex(*z.shape):
      dz = np.zeros_like(z)
      dz[idx] = 1e-5
      numeric[idx] = (penalty(z + dz) - penalty(z - dz)) / 2e-5
    ce_grad = (np_softmax(z) - np.eye(4)[y]) / len(y)
    for m in (0, 1):
      self.assertGreater(np.abs(numeric[m]).max(), 1e-3)
      np.testing.assert_allclose(grad[m] - ce_grad[m], beta * numeric[m], atol=2e-5)


class DeployedPredictionTest(absltest.TestCase):

  def test_ensemble_is_reported_by_the_mean_of_its_members(self):
    # Broken on purpose: ensemble prediction "member0" -> fails.
    with tempfile.TemporaryDirectory() as tmp:
      # The shared finished study (tests/testing.py: finished_study), trained once per run.
      config = testing.finished_study(os.path.join(tmp, "wd"))
      with open(os.path.join(tmp, "wd", "results.json")) as f:
        results = json.load(f)
      from churn_jax import data  # pylint: disable=g-import-not-at-top
      ds = data.get_dataset(config.data)
      out = train.train_method(config, ds, build(config, "ensemble2"))
      mean = out.member_probs.mean(axis=1)  # (R, N, K)
      nll = lambda p: -np.mean(np.log(np.clip(p[np.arange(len(out.labels)), out.labels],
                                              1e-12, None)))
      reported = results["methods"]["ensemble2"]["nll"]["values"]
      np.testing.assert_allclose(reported, [nll(m) for m in mean], rtol=1e-4)
      self.assertGreater(abs(reported[0] - nll(out.member_probs[0, 0])), 1e-4)


CHILD_TESTS = absltest.TestLoader().getTestCaseNames(ChildTest)
if not device_child.RUNNING:
  del ChildTest  # Collected only in tests/device_child.py, which has the devices it needs.

if __name__ == "__main__":
  absltest.main()
