"""The train step's XLA:CPU compiler options (step.compiler_options): what the trainer passes,
and that they change no number (only the compile time, docs/PERFORMANCE.md)."""

import sys
import os

from unittest import mock

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import optax

from churn_jax import methods, models
from churn_jax.engine import sharding, stack
from churn_jax.engine import step as step_lib
from churn_jax.study import train, validate
from tests import fast_jit
from tests import testing

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "benchmarks"))
import common  # benchmarks/common.py: the trainer's own step on random data.


class CompilerOptionsTest(absltest.TestCase):

  def test_llvm_o1_on_cpu_only(self):
    with mock.patch.dict(os.environ):
      os.environ.pop(step_lib.CPU_OPTIONS_ENV, None)  # The tests set theirs (conftest.py).
      self.assertEqual(step_lib.compiler_options("cpu"), {"xla_backend_optimization_level": 1})
      self.assertIsNone(step_lib.compiler_options("gpu"))
      self.assertIsNone(step_lib.compiler_options("tpu"))
      os.environ[step_lib.CPU_OPTIONS_ENV] = ""  # Empty: the shipped ones too.
      self.assertEqual(step_lib.compiler_options("cpu"), {"xla_backend_optimization_level": 1})

  def test_the_environment_replaces_them_on_cpu_and_bad_values_are_one_error(self):
    with mock.patch.dict(os.environ, {step_lib.CPU_OPTIONS_ENV: '{"xla_cpu_use_fusion_emitters"'
                                      ': false, "xla_backend_optimization_level": 0}'}):
      self.assertEqual(step_lib.compiler_options("cpu"), {
          "xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0})
      self.assertIsNone(step_lib.compiler_options("gpu"))
      step_lib.check_compiler_options()  # Known options: no error.
    for text, pattern in [("[1]", "must be a JSON object"), ("{x", "must be a JSON object"),
                          ('{"xla_churn_jax_no_such_option": 1}',
                           "No such compile option: 'xla_churn_jax_no_such_option'")]:
      with self.subTest(text), mock.patch.dict(os.environ, {step_lib.CPU_OPTIONS_ENV: text}):
        with self.assertRaisesRegex(ValueError, pattern):
          step_lib.check_compiler_options()
        with self.assertRaisesRegex(ValueError, pattern):  # A study checks before it writes.
          validate.validate_config(testing.tiny_config())

  def test_the_trainer_step_is_jitted_with_them(self):
    # Private to jax 0.10.2 (pinned): the jit wrapper keeps its compiler options as pairs.
    train_step, _, _ = common.build_case("mlp", 1, 1, "vmap", 8)
    kvs = dict(train_step._jit_info.compiler_options_kvs or ())
    self.assertEqual(kvs, step_lib.compiler_options())

  def test_options_change_no_parameter(self):
    """Three steps of LeNet5 (conv, pool, dense) with the shipped options and with none: same
    bits. The tests' cheaper ones (conftest.py) differ in the last bit (measured: up to 9e-10
    absolute, 8e-7 relative), which is why a bitwise claim about the shipped options is tested
    at them."""
    trained = []
    # As a user's process compiles them: XLA's defaults where the tests set XLA_FLAGS.
    for options in (fast_jit.shipped_step_options(), fast_jit.XLA_DEFAULTS, fast_jit.CPU_OPTIONS):
      train_step, state, batch = common.build_case("lenet5", 1, 2, "loop", 8)
      # The same step, with these options.
      train_step = jax.jit(train_step._fun, donate_argnums=0, compiler_options=options)
      for _ in range(3):
        state, _ = train_step(state, batch, {})
      trained.append(jax.tree_util.tree_leaves(state.params))
    for a, b, c in zip(*trained):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
      np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-5, atol=1e-8)


class InitOptionsTest(absltest.TestCase):
  """init_state compiles with the step's options: at XLA:CPU's default -O2 the random
  initialisers of one LeNet-5 take ~15 s to compile, at -O1 ~1.5 s, with the same bits."""

  def _init(self, mesh=None):
    model = models.get_model("lenet5", 10)
    keys = jax.random.split(jax.random.key(0), 4).reshape(2, 2)
    tx = optax.sgd(0.1)
    return step_lib.init_state(model, tx, keys, jax.random.split(jax.random.key(1), 2),
                               jnp.zeros((1, 28, 28, 1)), mesh)

  def test_init_is_compiled_with_the_options(self):
    # An option XLA does not know makes the compile fail: proof the options reach it.
    bad = {"xla_churn_jax_no_such_option": 1}
    for mesh in (None, sharding.make_mesh(2, 2, 8)):
      with mock.patch.object(step_lib, "compiler_options", return_value=bad):
        with self.assertRaisesRegex(Exception, "xla_churn_jax_no_such_option"):
          self._init(mesh)

  def test_init_can_be_traced(self):
    # Nested in a trace (eval_shape, jit) the options are left to the outer compile.
    state = jax.eval_shape(self._init)
    leaves = jax.tree_util.tree_leaves(state.params)
    self.assertTrue(leaves)
    self.assertEqual({leaf.shape[:2] for leaf in leaves}, {(2, 2)})  # (runs, members)

  def test_options_change_no_initial_parameter(self):
    # The smallest model: the -O2 compile is the slow one (checked by hand on LeNet-5 and
    # ResNet-8 too: same bits).
    model = models.get_model("mlp", 10, hidden=(4,))
    keys = jax.random.split(jax.random.key(0), 2).reshape(1, 2)
    init = lambda k: stack.init_stack(model, k, jnp.zeros((1, 40)))
    with_options = jax.jit(init, compiler_options=fast_jit.shipped_step_options())(keys)
    default = jax.jit(init, compiler_options=fast_jit.XLA_DEFAULTS)(keys)
    for a, b in zip(jax.tree_util.tree_leaves(with_options), jax.tree_util.tree_leaves(default)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class PredictOptionsTest(absltest.TestCase):
  """The evaluation's forward pass compiles with the step's options too (make_predict)."""

  def test_the_trainers_predict_is_compiled_with_the_options(self):
    # Through the trainer: an option XLA does not know must fail its evaluation's compile.
    config = testing.tiny_config(num_runs=1, num_steps=1)
    method = methods.build("baseline", config.method_configs["baseline"], 1)
    calls = []
    real = step_lib.make_predict
    def spy(*args, **kwargs):
      calls.append(kwargs.get("options"))
      return real(*args, **{**kwargs, "options": {"xla_churn_jax_no_such_option": 1}})
    with mock.patch.object(step_lib, "make_predict", side_effect=spy):
      with self.assertRaisesRegex(Exception, "xla_churn_jax_no_such_option"):
        train.train_method(config, testing.tiny_dataset(), method)
    self.assertTrue(calls)
    self.assertEqual(calls, [None] * len(calls))  # The trainer leaves the default in place...
    with mock.patch.object(step_lib, "compiler_options",  # ...and the default is the step's.
                           return_value={"xla_churn_jax_no_such_option": 1}):
      with self.assertRaisesRegex(Exception, "xla_churn_jax_no_such_option"):
        step_lib.make_predict(models.get_model("mlp", 10, hidden=(4,)), "vmap")(
            self._state(), jnp.zeros((2, 40)))

  def test_options_change_no_probability(self):
    model = models.get_model("mlp", 10, hidden=(4,))
    state, x = self._state(model), jnp.asarray(np.random.default_rng(0).normal(size=(6, 40)),
                                               jnp.float32)
    with_options = step_lib.make_predict(model, "vmap",
                                         options=fast_jit.shipped_step_options())(state, x)
    default = step_lib.make_predict(model, "vmap", options=fast_jit.XLA_DEFAULTS)(state, x)
    np.testing.assert_array_equal(np.asarray(with_options), np.asarray(default))

  @staticmethod
  def _state(model=None):
    model = model or models.get_model("mlp", 10, hidden=(4,))
    keys = jax.random.split(jax.random.key(0), 2).reshape(1, 2)
    return step_lib.init_state(model, optax.sgd(0.1), keys, jax.random.split(jax.random.key(1), 1),
                               jnp.zeros((1, 40)))


if __name__ == "__main__":
  absltest.main()
