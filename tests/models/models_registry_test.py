"""Tests for churn_jax.models.registry: names, classes, kwargs, predicates."""

from absl.testing import absltest
from absl.testing import parameterized

from churn_jax import models
from churn_jax.models import registry


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

if __name__ == '__main__':
  absltest.main()
