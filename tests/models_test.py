"""Tests for churn_jax.models: shapes, parameter counts, BatchNorm, registry."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from churn_jax import models
from churn_jax.models import registry
from churn_jax.models import resnet_cifar

# Small inputs keep the whole file fast on a shared 2-core CPU.
MNIST1D = (4, 40)
DIGITS = (4, 8, 8, 1)
CIFAR = (2, 32, 32, 3)


def _init(model, shape, seed=0):
  """Real random init, compiled as one program (cheaper than eager init)."""
  return jax.jit(model.init)(jax.random.key(seed), jnp.zeros(shape))


def _abstract_init(model, shape):
  """Variables' shapes only: no FLOPs, so ResNet-56/50 stay cheap."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0),
                                           jnp.zeros(shape, jnp.float32)))


def _filled_init(model, shape, seed=0):
  """Init-shaped variables filled from numpy.

  Compiling jax.random for every kernel shape costs seconds per model on a
  busy CPU; forward-pass tests only need some finite values. BatchNorm
  running stats get their real initial values (mean 0, var 1).
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    key = jax.tree_util.keystr(path)
    if key.endswith("['mean']"):
      return np.zeros(leaf.shape, leaf.dtype)
    if key.endswith("['var']"):
      return np.ones(leaf.shape, leaf.dtype)
    return (0.2 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill,
                                          _abstract_init(model, shape))


@functools.lru_cache(maxsize=None)
def _jitted_apply(model, train, mutable):
  return jax.jit(functools.partial(model.apply, train=train, mutable=mutable))


def _apply(model, variables, x, train=False, mutable=False):
  """Jitted model.apply: one compile beats op-by-op eager dispatch, and the
  cache lets tests that share a model and mode share the compile."""
  mutable = tuple(mutable) if isinstance(mutable, list) else mutable
  return _jitted_apply(model, train, mutable)(variables, x)


def _num_params(variables):
  return sum(int(np.prod(x.shape))
             for x in jax.tree_util.tree_leaves(variables['params']))


def _flat(params):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(params))


def _conv_kernels(params, spatial):
  """Conv kernels (4-D) whose spatial shape is ``spatial``, e.g. (3, 3)."""
  return {k: v for k, v in _flat(params).items()
          if k[-1] == 'kernel' and v.ndim == 4 and v.shape[:2] == spatial}


class ForwardTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('mlp_mnist1d', 'mlp', MNIST1D, {}),
      ('mlp_digits', 'mlp', DIGITS, {}),
      ('conv1d_BL', 'conv1d', MNIST1D, {}),
      ('conv1d_BLC', 'conv1d', MNIST1D + (1,), {}),
      ('lenet5_digits', 'lenet5', DIGITS, {}),
      ('resnet20_cifar', 'resnet20', CIFAR, {}),
      ('resnet_cifar8_digits', 'resnet_cifar', DIGITS, {'depth': 8}),
      ('wrn10_1_digits', 'wrn', DIGITS, {'depth': 10, 'width': 1}),
  )
  def test_logits_shape_and_dtype(self, name, shape, kwargs):
    model = models.get_model(name, 10, **kwargs)
    variables = _filled_init(model, shape)
    expected = ({'params', 'batch_stats'} if models.has_batch_norm(name)
                else {'params'})
    self.assertEqual(set(variables), expected)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    logits = _apply(model, variables, x)
    self.assertEqual(logits.shape, (shape[0], 10))
    self.assertEqual(logits.dtype, jnp.float32)
    self.assertTrue(np.all(np.isfinite(logits)))

  def test_integer_input_gives_float32_logits(self):
    model = models.LeNet5(num_classes=3)
    x = jnp.ones(DIGITS, jnp.uint8)
    logits = _apply(model, _filled_init(model, DIGITS), x)
    self.assertEqual(logits.dtype, jnp.float32)
    self.assertEqual(logits.shape, (4, 3))

  def test_resnet_v2_50_shape_abstractly(self):
    model = models.get_model('resnet_v2_50', 1000)
    shape = (2, 224, 224, 3)
    variables = _abstract_init(model, shape)
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
    shape = DIGITS if name == 'lenet5' else MNIST1D
    model = models.get_model(name, 10)
    variables = _filled_init(model, shape)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(_apply(model, variables, x, train=True),
                                  _apply(model, variables, x, train=False))

  def test_conv1d_rejects_4d_input(self):
    model = models.Conv1DNet(num_classes=10)
    with self.assertRaisesRegex(ValueError, 'Conv1DNet expects'):
      _abstract_init(model, DIGITS)


class ParameterCountTest(parameterized.TestCase):

  @parameterized.named_parameters(
      # He et al. 2016, Table 6: 0.27M / 0.46M / 0.85M.
      ('resnet20', 'resnet20', 10, CIFAR, 0.27e6, 0.03),
      ('resnet32', 'resnet32', 10, CIFAR, 0.46e6, 0.03),
      ('resnet56', 'resnet56', 10, CIFAR, 0.85e6, 0.03),
      # Pre-activation ResNet-50 for ImageNet: ~25.5M.
      ('resnet_v2_50', 'resnet_v2_50', 1000, (1, 224, 224, 3), 25.5e6, 0.02),
  )
  def test_resnet_counts(self, name, num_classes, shape, expected, rtol):
    model = models.get_model(name, num_classes)
    count = _num_params(_abstract_init(model, shape))
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
    count = _num_params(_abstract_init(model, (1, 32, 32, 3)))
    self.assertEqual(count, expected)
    self.assertAlmostEqual(count / 36.5e6, 1.0, delta=0.002)
    # BE-4 adds rank-1 fast weights (4 x (c_in + c_out) per layer) and member biases: under
    # 1% more parameters than the single network (Wen et al. 2020's memory argument).
    be = _num_params(_abstract_init(models.get_model('be_wrn28_10', 10), (1, 32, 32, 3)))
    self.assertGreater(be, count)
    self.assertLess(be / count, 1.01)

  def test_conv1d_matches_mnist1d_convbase(self):
    # PyTorch ConvBase: 150 + 1900 + 1900 conv weights+biases, 125*10+10 fc.
    count = _num_params(
        _abstract_init(models.Conv1DNet(num_classes=10), MNIST1D))
    self.assertEqual(count, 150 + 1900 + 1900 + 1260)

  def test_lenet5_on_digits(self):
    # 8x8 -> pool 4x4 -> pool 2x2: flatten 2*2*16 = 64 features.
    count = _num_params(_abstract_init(models.LeNet5(num_classes=10), DIGITS))
    convs = (5 * 5 * 1 * 6 + 6) + (5 * 5 * 6 * 16 + 16)
    dense = (64 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    self.assertEqual(count, convs + dense)

  def test_mlp_hidden_widths(self):
    model = models.MLP(num_classes=3, hidden=(7, 5))
    count = _num_params(_abstract_init(model, MNIST1D))
    self.assertEqual(count, (40 * 7 + 7) + (7 * 5 + 5) + (5 * 3 + 3))


class BatchNormTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = models.get_model('resnet20', 10)
    cls.shape = (2, 8, 8, 3)  # Tiny spatial size: BN logic, not accuracy.
    cls.variables = _filled_init(cls.model, cls.shape)
    rng = np.random.default_rng(3)
    cls.x = (2.0 * rng.standard_normal(cls.shape) + 1.0).astype(np.float32)

  def test_train_updates_batch_stats(self):
    logits, updates = _apply(self.model, self.variables, self.x, train=True,
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
    logits1, updates = _apply(self.model, self.variables, self.x,
                              train=False, mutable=['batch_stats'])
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           updates['batch_stats'],
                           self.variables['batch_stats'])
    logits2 = _apply(self.model, self.variables, self.x, train=False)
    np.testing.assert_array_equal(logits1, logits2)

  def test_train_mode_uses_batch_statistics(self):
    train_logits, _ = _apply(self.model, self.variables, self.x, train=True,
                             mutable=['batch_stats'])
    eval_logits = _apply(self.model, self.variables, self.x, train=False)
    self.assertFalse(np.allclose(train_logits, eval_logits))


class ResNetStructureTest(parameterized.TestCase):

  @parameterized.parameters(8, 20, 32, 56)
  def test_cifar_resnet_layers(self, depth):
    n = (depth - 2) // 6
    model = models.ResNetCIFAR(num_classes=10, depth=depth)
    params = _abstract_init(model, (1, 32, 32, 3))['params']
    # depth = 3x3 convs + the final Dense; projections are extra 1x1 convs.
    self.assertLen(_conv_kernels(params, (3, 3)), depth - 1)
    self.assertLen(_conv_kernels(params, (1, 1)), 2)
    blocks = [k for k in params if k.startswith('stage')]
    self.assertLen(blocks, 3 * n)
    self.assertEqual(params['logits']['kernel'].shape, (64, 10))

  def test_cifar_resnet_stage_shapes(self):
    model = models.ResNetCIFAR(num_classes=10, depth=20)
    variables = _abstract_init(model, (1, 32, 32, 3))
    _, state = jax.eval_shape(
        lambda v: model.apply(v, jnp.zeros((1, 32, 32, 3)),
                              capture_intermediates=True),
        variables)
    inter = state['intermediates']
    self.assertEqual(inter['stage1_block2']['__call__'][0].shape,
                     (1, 32, 32, 16))
    self.assertEqual(inter['stage2_block0']['__call__'][0].shape,
                     (1, 16, 16, 32))
    self.assertEqual(inter['stage3_block2']['__call__'][0].shape,
                     (1, 8, 8, 64))

  def test_cifar_resnet_he_normal_init(self):
    # One real init of a single 64-filter block: the model's init path
    # without compiling jax.random for every kernel shape of a whole ResNet.
    block = resnet_cifar.BasicBlock(features=64)
    params = _init(block, (1, 4, 4, 64))['params']
    kernel = np.asarray(params['conv2']['kernel'])  # 3x3x64x64.
    expected_std = np.sqrt(2.0 / (3 * 3 * 64))
    self.assertAlmostEqual(float(np.std(kernel)) / expected_std, 1.0,
                           delta=0.1)

  def test_wrn_layers_and_stage_shapes(self):
    model = models.get_model('wrn', 10, depth=16, width=2)
    variables = _abstract_init(model, (1, 32, 32, 3))
    params = variables['params']
    # depth 6n + 4 counts the 6n + 1 3x3 convs, the Dense and two of the three 1x1
    # projections (one per stage here, as the width changes in every stage).
    self.assertLen(_conv_kernels(params, (3, 3)), 13)
    self.assertLen(_conv_kernels(params, (1, 1)), 3)
    self.assertEqual(params['logits']['kernel'].shape, (128, 10))
    _, state = jax.eval_shape(
        lambda v: model.apply(v, jnp.zeros((1, 32, 32, 3)), capture_intermediates=True),
        variables)
    inter = state['intermediates']
    self.assertEqual(inter['stage1_block1']['__call__'][0].shape, (1, 32, 32, 32))
    self.assertEqual(inter['stage2_block0']['__call__'][0].shape, (1, 16, 16, 64))
    self.assertEqual(inter['stage3_block1']['__call__'][0].shape, (1, 8, 8, 128))

  @parameterized.parameters(4, 12, 'twenty')
  def test_wrn_bad_depth(self, depth):
    with self.assertRaisesRegex(ValueError, r'^WideResNet depth must be 6n\+4') as cm:
      models.get_model('wrn', 10, depth=depth)
    self.assertNotIn('\n', str(cm.exception))

  @parameterized.parameters(0, 2, 21, 'twenty')
  def test_cifar_resnet_bad_depth(self, depth):
    with self.assertRaisesRegex(ValueError, r'^ResNetCIFAR depth must be 6n\+2'
                                ) as cm:
      models.ResNetCIFAR(num_classes=10, depth=depth)
    self.assertNotIn('\n', str(cm.exception))

  def test_resnet_v2_50_layers(self):
    model = models.get_model('resnet_v2_50', 1000)
    params = _abstract_init(model, (1, 224, 224, 3))['params']
    blocks = sorted(k for k in params if k.startswith('stage'))
    per_stage = [sum(k.startswith(f'stage{s}_') for k in blocks)
                 for s in range(1, 5)]
    self.assertEqual(per_stage, [3, 4, 6, 3])
    for block in blocks:
      self.assertContainsSubset({'preact_bn', 'conv1', 'conv2', 'conv3'},
                                set(params[block]))
    kernels = {k: v for k, v in _flat(params).items()
               if k[-1] == 'kernel' and v.ndim == 4}
    # Stem + 3 per block + one projection per stage = 50 - 1 + 4.
    self.assertLen(kernels, 1 + 3 * 16 + 4)
    self.assertEqual(params['stem_conv']['kernel'].shape, (7, 7, 3, 64))
    self.assertEqual(params['stage4_block2']['conv3']['kernel'].shape,
                     (1, 1, 512, 2048))
    self.assertEqual(params['logits']['kernel'].shape, (2048, 1000))

  def test_resnet_v2_50_strides(self):
    model = models.get_model('resnet_v2_50', 10)
    shape = (1, 64, 64, 3)
    variables = _abstract_init(model, shape)
    _, state = jax.eval_shape(
        lambda v: model.apply(v, jnp.zeros(shape), capture_intermediates=True),
        variables)
    inter = state['intermediates']
    # Stem conv + pool: /4; then stages 2-4 halve again in their first block.
    for s, (size, ch) in enumerate(((16, 256), (8, 512), (4, 1024),
                                    (2, 2048)), start=1):
      self.assertEqual(inter[f'stage{s}_block0']['__call__'][0].shape,
                       (1, size, size, ch))

  def test_resnet_v2_bad_depth(self):
    with self.assertRaisesRegex(ValueError, 'ResNetV2 depth must be one of'):
      models.ResNetV2(num_classes=10, depth=34)


class RegistryTest(parameterized.TestCase):

  def test_model_names(self):
    self.assertEqual(
        set(models.MODEL_NAMES),
        {'mlp', 'conv1d', 'lenet5', 'resnet20', 'resnet32', 'resnet56',
         'resnet_cifar', 'resnet_v2_50', 'wrn', 'wrn28_10', 'be_mlp', 'be_wrn',
         'be_wrn28_10', 'patchnet'})
    self.assertIsInstance(models.MODEL_NAMES, tuple)

  @parameterized.parameters(
      ('mlp', models.MLP), ('conv1d', models.Conv1DNet),
      ('lenet5', models.LeNet5), ('resnet20', models.ResNetCIFAR),
      ('resnet_cifar', models.ResNetCIFAR), ('resnet_v2_50', models.ResNetV2))
  def test_get_model_class(self, name, cls):
    model = models.get_model(name, 7)
    self.assertIsInstance(model, cls)
    self.assertEqual(model.num_classes, 7)

  @parameterized.parameters(('resnet20', 20), ('resnet32', 32),
                            ('resnet56', 56), ('resnet_v2_50', 50),
                            ('wrn28_10', 28), ('be_wrn28_10', 28))
  def test_depth_fixed_by_name(self, name, depth):
    self.assertEqual(models.get_model(name, 10).depth, depth)

  def test_kwargs_forwarded(self):
    self.assertEqual(models.get_model('resnet_cifar', 10, depth=44).depth, 44)
    mlp = models.get_model('mlp', 10, hidden=[32, 16])
    self.assertEqual(mlp.hidden, (32, 16))
    self.assertEqual(models.get_model('conv1d', 10, channels=8).channels, 8)

  def test_unknown_name(self):
    with self.assertRaisesRegex(ValueError,
                                r"^unknown model 'vgg16'; known: mlp, ") as cm:
      models.get_model('vgg16', 10)
    self.assertNotIn('\n', str(cm.exception))
    for fn in (models.uses_convolutions, models.has_batch_norm):
      with self.assertRaisesRegex(ValueError, "unknown model 'vgg16'"):
        fn('vgg16')

  @parameterized.parameters(('mlp', 'widths'), ('resnet20', 'depth'),
                            ('lenet5', 'dropout'), ('resnet_v2_50', 'depth'))
  def test_unexpected_kwarg(self, name, key):
    with self.assertRaises(ValueError) as cm:
      models.get_model(name, 10, **{key: 3})
    message = str(cm.exception)
    self.assertIn(repr(name), message)
    self.assertIn(repr(key), message)
    self.assertNotIn('\n', message)

  def test_bad_depth_through_registry(self):
    with self.assertRaisesRegex(ValueError, '6n\\+2'):
      models.get_model('resnet_cifar', 10, depth=30)

  def test_allowed_kwargs(self):
    self.assertEqual(registry.allowed_kwargs('resnet20'), ())
    self.assertEqual(registry.allowed_kwargs('resnet_cifar'), ('depth',))
    self.assertIn('hidden', registry.allowed_kwargs('mlp'))

  def test_predicates(self):
    for name in models.MODEL_NAMES:
      self.assertEqual(models.uses_convolutions(name),
                       name not in ('mlp', 'be_mlp', 'patchnet'), name)
      self.assertEqual(models.has_batch_norm(name),
                       name.startswith(('resnet', 'wrn', 'be_wrn')), name)


class MLPTrainingTest(absltest.TestCase):

  def test_sgd_reduces_loss(self):
    # Two well-separated Gaussian blobs in 2-D: linearly separable.
    rng = np.random.default_rng(0)
    n = 64
    labels = np.arange(n) % 2
    x = rng.normal(size=(n, 2)).astype(np.float32) * 0.5
    x[:, 0] += np.where(labels == 1, 2.0, -2.0)
    x, labels = jnp.asarray(x), jnp.asarray(labels)

    model = models.get_model('mlp', 2, hidden=(16,))
    params = _init(model, (1, 2))['params']
    opt = optax.sgd(0.1)
    opt_state = opt.init(params)

    def loss_fn(p):
      logits = model.apply({'params': p}, x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).mean()

    @jax.jit
    def step(p, s):
      loss, grads = jax.value_and_grad(loss_fn)(p)
      updates, s = opt.update(grads, s, p)
      return optax.apply_updates(p, updates), s, loss

    initial = float(loss_fn(params))
    for _ in range(50):
      params, opt_state, _ = step(params, opt_state)
    final = float(loss_fn(params))
    self.assertLess(final, 0.5 * initial)
    accuracy = float(jnp.mean(
        jnp.argmax(model.apply({'params': params}, x), -1) == labels))
    self.assertGreater(accuracy, 0.95)


if __name__ == '__main__':
  absltest.main()
