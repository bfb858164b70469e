"""Tests for the ResNet/WRN builders: layer counts, stage shapes, strides, init, bad depths."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from churn_jax import models
from churn_jax.models import resnet_cifar
from tests import model_helpers as mh


class ResNetStructureTest(parameterized.TestCase):

  @parameterized.parameters(8, 20, 32, 56)
  def test_cifar_resnet_layers(self, depth):
    n = (depth - 2) // 6
    model = models.ResNetCIFAR(num_classes=10, depth=depth)
    params = mh.abstract_init(model, (1, 32, 32, 3))['params']
    # depth = 3x3 convs + the final Dense; projections are extra 1x1 convs.
    self.assertLen(mh.conv_kernels(params, (3, 3)), depth - 1)
    self.assertLen(mh.conv_kernels(params, (1, 1)), 2)
    blocks = [k for k in params if k.startswith('stage')]
    self.assertLen(blocks, 3 * n)
    self.assertEqual(params['logits']['kernel'].shape, (64, 10))

  def test_cifar_resnet_stage_shapes(self):
    model = models.ResNetCIFAR(num_classes=10, depth=20)
    variables = mh.abstract_init(model, (1, 32, 32, 3))
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
    params = mh.init(block, (1, 4, 4, 64))['params']
    kernel = np.asarray(params['conv2']['kernel'])  # 3x3x64x64.
    expected_std = np.sqrt(2.0 / (3 * 3 * 64))
    self.assertAlmostEqual(float(np.std(kernel)) / expected_std, 1.0,
                           delta=0.1)

  def test_wrn_layers_and_stage_shapes(self):
    model = models.get_model('wrn', 10, depth=16, width=2)
    variables = mh.abstract_init(model, (1, 32, 32, 3))
    params = variables['params']
    # depth 6n + 4 counts the 6n + 1 3x3 convs, the Dense and two of the three 1x1
    # projections (one per stage here, as the width changes in every stage).
    self.assertLen(mh.conv_kernels(params, (3, 3)), 13)
    self.assertLen(mh.conv_kernels(params, (1, 1)), 3)
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
    params = mh.abstract_init(model, (1, 224, 224, 3))['params']
    blocks = sorted(k for k in params if k.startswith('stage'))
    per_stage = [sum(k.startswith(f'stage{s}_') for k in blocks)
                 for s in range(1, 5)]
    self.assertEqual(per_stage, [3, 4, 6, 3])
    for block in blocks:
      self.assertContainsSubset({'preact_bn', 'conv1', 'conv2', 'conv3'},
                                set(params[block]))
    kernels = {k: v for k, v in mh.flat(params).items()
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
    variables = mh.abstract_init(model, shape)
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

if __name__ == '__main__':
  absltest.main()
