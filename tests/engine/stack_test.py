"""The stack computes what separate models compute, whatever the execution strategy."""

from absl.testing import absltest, parameterized
import chex
import flax.linen as nn
import jax
import numpy as np

from churn_jax import methods, models
from churn_jax.engine import stack, step
from churn_jax.study import train
from tests import testing


class _ConvBN(nn.Module):
  """Smallest model with a convolution and BatchNorm (a ResNet compiles for ~30 s here)."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(3, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(4)(nn.relu(x).mean(axis=(1, 2)))


class StrategyTest(parameterized.TestCase):

  @parameterized.parameters(
      dict(name="mlp", kwargs=dict(hidden=(8,)), image=False),
      dict(name="lenet5", kwargs={}, image=True),
      dict(name="conv_bn", kwargs={}, image=True),
  )
  def test_vmap_and_loop_apply_agree(self, name, kwargs, image):
    model = _ConvBN() if name == "conv_bn" else models.get_model(name, 4, **kwargs)
    ds = testing.tiny_dataset(image=image)
    keys = train.member_keys(0, [0, 1], 2, True)
    # Compiled as the trainer compiles them (one program each, the step's XLA options): run op
    # by op, the initialisers alone compiled ~1.3 s each at XLA:CPU's default -O2.
    options = step.compiler_options()
    variables = jax.jit(lambda k: stack.init_stack(model, k, ds.x_train[:1]),
                        compiler_options=options)(keys)
    x = np.stack([ds.x_train[:5], ds.x_train[5:10]])
    apply = jax.jit(lambda v, x, training, strategy: stack.apply_stack(
        model, v, x, train=training, strategy=strategy), static_argnums=(2, 3),
                    compiler_options=options)
    for training in (False, True):
      out_v, stats_v = apply(variables, x, training, "vmap")
      out_l, stats_l = apply(variables, x, training, "loop")
      chex.assert_shape(out_v, (2, 2, 5, 4))
      chex.assert_trees_all_close(out_v, out_l, rtol=1e-4, atol=1e-5)
      chex.assert_trees_all_equal_structs(stats_v, stats_l)
      chex.assert_trees_all_close(stats_v, stats_l, rtol=1e-4, atol=1e-5)
    # Different members and runs start from different parameters: compared on the same input.
    same, _ = stack.apply_stack(model, variables, x[0], train=False, strategy="vmap",
                                x_per_run=False)
    self.assertGreater(float(np.abs(same[0, 0] - same[0, 1]).max()), 1e-4)
    self.assertGreater(float(np.abs(same[0, 0] - same[1, 0]).max()), 1e-4)
    # The stack's entry checks that inputs and variables agree on the run axis.
    with self.assertRaises(AssertionError):
      stack.apply_stack(model, variables, x[:1], train=False, strategy="vmap")

  def test_resolve_strategy(self):
    self.assertEqual(stack.resolve_strategy("auto", True, "cpu"), "loop")
    self.assertEqual(stack.resolve_strategy("auto", False, "cpu"), "vmap")
    self.assertEqual(stack.resolve_strategy("auto", True, "gpu"), "vmap")
    self.assertEqual(stack.resolve_strategy("loop", False, "tpu"), "loop")
    with self.assertRaisesRegex(ValueError, "unknown execution strategy 'pmap'"):
      stack.resolve_strategy("pmap", True)


class StackedEqualsSeparateTest(parameterized.TestCase):

  # Co-distillation (M = 2) covers the member axis; the baseline is the same program with M = 1.
  @parameterized.product(strategy=("vmap", "loop"), method=("codistill",))
  def test_runs_trained_stacked_equal_runs_trained_alone(self, strategy, method):
    config = testing.tiny_config(num_runs=3, num_steps=6)
    config.strategy = strategy
    ds = testing.tiny_dataset()
    m = methods.build(method, config.method_configs[method], config.num_train_steps)
    stacked = train.train_method(config, ds, m)
    for r in (0, 2):  # Run 2 alone must match position 2 of the stack: keys follow run ids.
      alone = train.train_method(config, ds, m, run_ids=[r])
      run_r = jax.tree_util.tree_map(lambda a: a[r:r + 1], stacked.state.params)
      chex.assert_trees_all_equal_shapes(run_r, alone.state.params)
      chex.assert_trees_all_close(run_r, alone.state.params, rtol=1e-4, atol=1e-5)
      chex.assert_trees_all_close(stacked.member_probs[r:r + 1], alone.member_probs,
                                  rtol=1e-4, atol=1e-5)
    # The runs really are independent replicates: their parameters differ.
    p = jax.tree_util.tree_leaves(stacked.state.params)[0]
    self.assertGreater(float(np.abs(p[0] - p[1]).max()), 1e-3)

  def test_fixed_init_and_data_make_runs_identical(self):
    # With no source of randomness varying, replicate runs are bitwise equal on CPU
    # (Bhojanapalli et al. 2021, Table 1: zero churn on CPU).
    config = testing.tiny_config(num_runs=2, num_steps=4)
    config.vary = ""
    ds = testing.tiny_dataset()
    m = methods.build("baseline", config.method_configs["baseline"], 4)
    out = train.train_method(config, ds, m)
    chex.assert_trees_all_equal(out.member_probs[0], out.member_probs[1])
    chex.assert_trees_all_equal(*[jax.tree_util.tree_map(lambda a, r=r: a[r], out.state.params)
                                  for r in (0, 1)])


if __name__ == "__main__":
  absltest.main()
