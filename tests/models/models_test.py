"""Tests for churn_jax.models: forward shapes, parameter counts, BatchNorm, training."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import optax

from churn_jax import models
from tests import fast_jit
from tests import model_helpers as mh


class ForwardTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('mlp_mnist1d', 'mlp', mh.MNIST1D, {}),
      ('mlp_digits', 'mlp', mh.DIGITS, {}),
      ('conv1d_BL', 'conv1d', mh.MNIST1D, {}),
      ('conv1d_BLC', 'conv1d', mh.MNIST1D + (1,), {}),
      ('lenet5_digits', 'lenet5', mh.DIGITS, {}),
      ('resnet20_cifar', 'resnet20', mh.CIFAR, {}),
      ('resnet_cifar8_digits', 'resnet_cifar', mh.DIGITS, {'depth': 8}),
      ('wrn10_1_digits', 'wrn', mh.DIGITS, {'depth': 10, 'width': 1}),
  )
  def test_logits_shape_and_dtype(self, name, shape, kwargs):
    model = models.get_model(name, 10, **kwargs)
    variables = mh.filled_init(model, shape)
    expected = ({'params', 'batch_stats'} if models.has_batch_norm(name)
                else {'params'})
    self.assertEqual(set(variables), expected)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    logits = mh.apply(model, variables, x)
    self.assertEqual(logits.shape, (shape[0], 10))
    self.assertEqual(logits.dtype, jnp.float32)
    self.assertTrue(np.all(np.isfinite(logits)))

  def test_integer_input_gives_float32_logits(self):
    model = models.LeNet5(num_classes=3)
    x = jnp.ones(mh.DIGITS, jnp.uint8)
    logits = mh.apply(model, mh.filled_init(model, mh.DIGITS), x)
    self.assertEqual(logits.dtype, jnp.float32)
    self.assertEqual(logits.shape, (4, 3))

  def test_resnet_v2_50_shape_abstractly(self):
    model = models.get_model('resnet_v2_50', 1000)
    shape = (2, 224, 224, 3)
    variables = mh.abstract_init(model, shape)
    for train in (False, True):
      out = jax.eval_shape(
          lambda v, x, t=train: model.apply(v, x, train=t,
                                            mutable=['batch_stats']),
          variables, jax.ShapeDtypeStruct(shape, jnp.float32))
      logits, _ = out
      self.assertEqual(logits.shape, (2, 1000))
      self.assertEqual(logits.dtype, jnp.float32)

  @parameterized.parameters('mlp', 'conv1d', 'lenet5')
  def test_models_without_batch_norm_ignore_train(self, name):
    shape = mh.DIGITS if name == 'lenet5' else mh.MNIST1D
    model = models.get_model(name, 10)
    variables = mh.filled_init(model, shape)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(mh.apply(model, variables, x, train=True),
                                  mh.apply(model, variables, x, train=False))

  def test_conv1d_rejects_4d_input(self):
    model = models.Conv1DNet(num_classes=10)
    with self.assertRaisesRegex(ValueError, 'Conv1DNet expects'):
      mh.abstract_init(model, mh.DIGITS)


class ParameterCountTest(parameterized.TestCase):

  @parameterized.named_parameters(
      # He et al. 2016, Table 6: 0.27M / 0.46M / 0.85M.
      ('resnet20', 'resnet20', 10, mh.CIFAR, 0.27e6, 0.03),
      ('resnet32', 'resnet32', 10, mh.CIFAR, 0.46e6, 0.03),
      ('resnet56', 'resnet56', 10, mh.CIFAR, 0.85e6, 0.03),
      # Pre-activation ResNet-50 for ImageNet: ~25.5M.
      ('resnet_v2_50', 'resnet_v2_50', 1000, (1, 224, 224, 3), 25.5e6, 0.02),
  )
  def test_resnet_counts(self, name, num_classes, shape, expected, rtol):
    model = models.get_model(name, num_classes)
    count = mh.num_params(mh.abstract_init(model, shape))
    self.assertAlmostEqual(count / expected, 1.0, delta=rtol,
                           msg=f'{name}: {count} params')

  def test_wrn28_10_count(self):
    # Zagoruyko & Komodakis 2016: WRN-28-10 has 36.5M parameters. Counted by hand here:
    # stem 3x3x3x16; per block BN(c_in) + 3x3 c_in->c + BN(c) + 3x3 c->c (+ a 1x1 c_in->c
    # projection in each stage's first block); final BN(640); Dense 640->10.
    expected, c_in = 3 * 3 * 3 * 16, 16
    for c in (160, 320, 640):
      for b in range(4):
        expected += 2 * c_in + 9 * c_in * c + 2 * c + 9 * c * c + (c_in * c if b == 0 else 0)
        c_in = c
    expected += 2 * 640 + 640 * 10 + 10
    model = models.get_model('wrn28_10', 10)
    self.assertEqual((model.depth, model.width), (28, 10))
    count = mh.num_params(mh.abstract_init(model, (1, 32, 32, 3)))
    self.assertEqual(count, expected)
    self.assertAlmostEqual(count / 36.5e6, 1.0, delta=0.002)
    # BE-4 adds rank-1 fast weights (4 x (c_in + c_out) per layer) and member biases: under
    # 1% more parameters than the single network (Wen et al. 2020's memory argument).
    be = mh.num_params(mh.abstract_init(models.get_model('be_wrn28_10', 10), (1, 32, 32, 3)))
    self.assertGreater(be, count)
    self.assertLess(be / count, 1.01)

  def test_conv1d_matches_mnist1d_convbase(self):
    # PyTorch ConvBase: 150 + 1900 + 1900 conv weights+biases, 125*10+10 fc.
    count = mh.num_params(
        mh.abstract_init(models.Conv1DNet(num_classes=10), mh.MNIST1D))
    self.assertEqual(count, 150 + 1900 + 1900 + 1260)

  def test_lenet5_on_digits(self):
    # 8x8 -> pool 4x4 -> pool 2x2: flatten 2*2*16 = 64 features.
    count = mh.num_params(mh.abstract_init(models.LeNet5(num_classes=10), mh.DIGITS))
    convs = (5 * 5 * 1 * 6 + 6) + (5 * 5 * 6 * 16 + 16)
    dense = (64 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    self.assertEqual(count, convs + dense)

  def test_mlp_hidden_widths(self):
    model = models.MLP(num_classes=3, hidden=(7, 5))
    count = mh.num_params(mh.abstract_init(model, mh.MNIST1D))
    self.assertEqual(count, (40 * 7 + 7) + (7 * 5 + 5) + (5 * 3 + 3))


class BatchNormTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = models.get_model('resnet20', 10)
    cls.shape = (2, 8, 8, 3)  # Tiny spatial size: BN logic, not accuracy.
    cls.variables = mh.filled_init(cls.model, cls.shape)
    rng = np.random.default_rng(3)
    cls.x = (2.0 * rng.standard_normal(cls.shape) + 1.0).astype(np.float32)

  def test_train_updates_batch_stats(self):
    logits, updates = mh.apply(self.model, self.variables, self.x, train=True,
                             mutable=['batch_stats'])
    self.assertEqual(logits.shape, (2, 10))
    old = jax.tree_util.tree_leaves(self.variables['batch_stats'])
    new = jax.tree_util.tree_leaves(updates['batch_stats'])
    self.assertEqual(len(old), len(new))
    self.assertTrue(any(not np.allclose(a, b) for a, b in zip(old, new)))
    # Momentum 0.9: the stem mean moves 10% of the way to the batch mean.
    stem_mean = updates['batch_stats']['stem_bn']['mean']
    self.assertTrue(np.all(np.abs(stem_mean) > 0))

  def test_eval_leaves_batch_stats_and_is_deterministic(self):
    logits1, updates = mh.apply(self.model, self.variables, self.x,
                              train=False, mutable=['batch_stats'])
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           updates['batch_stats'],
                           self.variables['batch_stats'])
    logits2 = mh.apply(self.model, self.variables, self.x, train=False)
    np.testing.assert_array_equal(logits1, logits2)

  def test_train_mode_uses_batch_statistics(self):
    train_logits, _ = mh.apply(self.model, self.variables, self.x, train=True,
                             mutable=['batch_stats'])
    eval_logits = mh.apply(self.model, self.variables, self.x, train=False)
    self.assertFalse(np.allclose(train_logits, eval_logits))


class MLPTrainingTest(absltest.TestCase):

  def test_sgd_reduces_loss(self):
    # Two well-separated Gaussian blobs in 2-D: linearly separable.
    rng = np.random.default_rng(0)
    n = 64
    labels = np.arange(n) % 2
    x = rng.normal(size=(n, 2)).astype(np.float32) * 0.5
    x[:, 0] += np.where(labels == 1, 2.0, -2.0)

    model = models.get_model('mlp', 2, hidden=(16,))
    params = mh.init(model, (1, 2))['params']
    opt = optax.sgd(0.1)
    # Jitted (the loss and predictions too): one program each, not one per
    # primitive; the accuracy in numpy.
    opt_state = fast_jit.jit(opt.init)(params)

    def loss_fn(p):
      logits = model.apply({'params': p}, x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).mean()

    @fast_jit.jit
    def step(p, s):
      loss, grads = jax.value_and_grad(loss_fn)(p)
      updates, s = opt.update(grads, s, p)
      return optax.apply_updates(p, updates), s, loss

    loss_of = fast_jit.jit(loss_fn)
    initial = float(loss_of(params))
    for _ in range(50):
      params, opt_state, _ = step(params, opt_state)
    final = float(loss_of(params))
    self.assertLess(final, 0.5 * initial)
    predict = fast_jit.jit(lambda p: model.apply({'params': p}, x))
    accuracy = np.mean(np.argmax(np.asarray(predict(params)), -1) == labels)
    self.assertGreater(accuracy, 0.95)

if __name__ == '__main__':
  absltest.main()
