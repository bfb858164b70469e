"""The train step's XLA:CPU compiler options (step.compiler_options): what the trainer passes,
and that they change no number (only the compile time, docs/PERFORMANCE.md)."""

import sys
import os

from absl.testing import absltest
import jax
import numpy as np

from churn_jax.engine import step as step_lib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "benchmarks"))
import common  # benchmarks/common.py: the trainer's own step on random data.


class CompilerOptionsTest(absltest.TestCase):

  def test_llvm_o1_on_cpu_only(self):
    self.assertEqual(step_lib.compiler_options("cpu"), {"xla_backend_optimization_level": 1})
    self.assertIsNone(step_lib.compiler_options("gpu"))
    self.assertIsNone(step_lib.compiler_options("tpu"))

  def test_the_trainer_step_is_jitted_with_them(self):
    # Private to jax 0.10.2 (pinned): the jit wrapper keeps its compiler options as pairs.
    train_step, _, _ = common.build_case("mlp", 1, 1, "vmap", 8)
    kvs = dict(train_step._jit_info.compiler_options_kvs or ())
    self.assertEqual(kvs, step_lib.compiler_options())

  def test_options_change_no_parameter(self):
    """Three steps of LeNet5 (conv, pool, dense) with and without the options: same bits."""
    trained = []
    for options in (None, {}):
      train_step, state, batch = common.build_case("lenet5", 1, 2, "loop", 8)
      if options is not None:
        train_step = jax.jit(train_step._fun, donate_argnums=0)  # The same step, no options.
      for _ in range(3):
        state, _ = train_step(state, batch, {})
      trained.append(jax.tree_util.tree_leaves(state.params))
    for a, b in zip(*trained):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


if __name__ == "__main__":
  absltest.main()
