"""The CPU convolution (models/layers.py): its chunked weight gradient, padded forward pass,
phase input gradient, and the reshape max pool, against lax and numpy."""

import functools
import os
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental.compilation_cache import compilation_cache as jax_cache
import numpy as np

from churn_jax import models
from churn_jax.engine import step
from churn_jax.models import layers
from churn_jax.runtime import compile_cache

DN = ('NHWC', 'HWIO', 'NHWC')


def _loss(conv, strides, padding, x, w):  # Non-linear: every output's cotangent differs.
  return jnp.sum(jnp.sin(conv(x, w, strides, padding, dimension_numbers=DN)))


def _value_and_grads(conv, strides, padding, x, w):
  return jax.jit(jax.value_and_grad(functools.partial(_loss, conv, strides, padding),
                                    argnums=(0, 1)))(x, w)


class PaddedForwardTest(parameterized.TestCase):
  """The padded path whatever this CPU's rule picks (PAD_FEW_CHANNELS is read at trace time)."""

  def setUp(self):
    super().setUp()
    patcher = mock.patch.object(layers, 'PAD_FEW_CHANNELS', True)
    patcher.start()
    self.addCleanup(patcher.stop)

  @parameterized.named_parameters(
      ('lenet_conv1', 32, 3, 6, (5, 5), (1, 1), 'SAME'),
      ('digits_one_channel', 20, 1, 6, (5, 5), (1, 1), 'SAME'),
      ('stem_stride2', 16, 3, 16, (3, 3), (2, 2), ((1, 1), (1, 1))),
  )
  def test_matches_lax_conv(self, batch, cin, cout, kernel, strides, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, 8, 8, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=kernel + (cin, cout)), jnp.float32)
    want = _value_and_grads(jax.lax.conv_general_dilated, strides, padding, x, w)
    got = _value_and_grads(layers.cpu_conv, strides, padding, x, w)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)

  @parameterized.parameters((3, 6, True), (8, 16, True), (16, 16, False), (3, 40, False))
  def test_pads_only_few_channel_convolutions(self, cin, cout, padded):
    x = jnp.zeros((2, 8, 8, cin))
    w = jnp.zeros((3, 3, cin, cout))
    text = jax.jit(lambda x, w: layers.cpu_conv(x, w, (1, 1), 'SAME', dimension_numbers=DN)
                   ).lower(x, w).as_text()
    kernel = f'tensor<3x3x{cin}x{layers.YNN_MIN_CHANNELS}xf32>'
    self.assertEqual(kernel in text, padded)

  def test_rule_off_pads_nothing(self):
    x, w = jnp.zeros((2, 8, 8, 3)), jnp.zeros((3, 3, 3, 6))
    conv = lambda x, w: layers.cpu_conv(x, w, (1, 1), 'SAME', dimension_numbers=DN)
    with mock.patch.object(layers, 'PAD_FEW_CHANNELS', False):
      text = jax.jit(conv).lower(x, w).as_text()
    self.assertNotIn(f'x{layers.YNN_MIN_CHANNELS}xf32>', text)
    self.assertIn('tensor<3x3x3x6xf32>', text)


class PadRuleTest(absltest.TestCase):
  """Which CPUs get the padded forward: the measured AVX2 / AVX-512 split."""

  def cpuinfo(self, flags):
    path = os.path.join(tempfile.mkdtemp(), 'cpuinfo')
    with open(path, 'w') as f:
      f.write(f'processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\n'
              f'processor\t: 1\nflags\t\t: {flags}\n')
    return path

  def test_reads_the_flags_line(self):
    flags = layers.cpu_flags(self.cpuinfo('fpu sse2 avx2 fma avx512f avx512bw'))
    self.assertEqual(flags, {'fpu', 'sse2', 'avx2', 'fma', 'avx512f', 'avx512bw'})

  def test_avx2_pads_avx512_does_not(self):
    self.assertTrue(layers.pad_pays(layers.cpu_flags(self.cpuinfo('sse2 avx2 fma'))))
    self.assertFalse(layers.pad_pays(layers.cpu_flags(self.cpuinfo('avx2 fma avx512f'))))

  def test_unreadable_cpuinfo_keeps_padding(self):
    self.assertEqual(layers.cpu_flags('/nonexistent/cpuinfo'), frozenset())
    self.assertTrue(layers.pad_pays(frozenset()))

  def test_this_process_follows_the_rule(self):
    with open('/proc/cpuinfo') as f:
      avx512 = ' avx512f' in f.read()
    self.assertEqual(layers.PAD_FEW_CHANNELS, not avx512)

  def test_under_vmap_over_stacked_members(self):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 4, 6, 6, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(2, 5, 5, 3, 6)), jnp.float32)
    def grads(conv):
      loss = functools.partial(_loss, conv, (1, 1), 'SAME')
      return jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=(0, 1))))(x, w)
    for a, b in zip(jax.tree_util.tree_leaves(grads(layers.cpu_conv)),
                    jax.tree_util.tree_leaves(grads(jax.lax.conv_general_dilated))):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)


class PhaseInputGradTest(parameterized.TestCase):
  """Stride-2 input gradients as four stride-1 phase convolutions (the CPU lowering)."""

  @parameterized.named_parameters(
      ('3x3_pad1', 8, (3, 3), ((1, 1), (1, 1))),
      ('1x1_projection', 8, (1, 1), ((0, 0), (0, 0))),
      ('3x3_same_odd_size', 7, (3, 3), 'SAME'),
      ('5x5_same', 8, (5, 5), 'SAME'),
      ('2x2_valid', 9, (2, 2), 'VALID'),
  )
  def test_matches_lax_conv(self, size, kernel, padding):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(4, size, size, 16)), jnp.float32)
    w = jnp.asarray(rng.normal(size=kernel + (16, 32)), jnp.float32)
    want = _value_and_grads(jax.lax.conv_general_dilated, (2, 2), padding, x, w)
    for conv in (layers.cpu_conv, layers.cpu_conv_split_batch):
      got = _value_and_grads(conv, (2, 2), padding, x, w)
      for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)

  def test_no_lhs_dilated_convolution_left(self):
    x, w = jnp.zeros((4, 8, 8, 16)), jnp.zeros((3, 3, 16, 32))
    def text(conv):
      grad = jax.grad(functools.partial(_loss, conv, (2, 2), ((1, 1), (1, 1))), argnums=0)
      return jax.jit(grad).lower(x, w).as_text()
    self.assertIn('lhs_dilate = [2, 2]', text(jax.lax.conv_general_dilated))
    got = text(layers.cpu_conv)
    self.assertNotIn('lhs_dilate = [2, 2]', got)
    self.assertEqual(got.count('stablehlo.convolution'), 1 + 4)  # Forward + 4 phases.

  def test_under_vmap_over_stacked_members(self):
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2, 4, 8, 8, 16)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(2, 3, 3, 16, 32)), jnp.float32)
    def grads(conv):
      loss = functools.partial(_loss, conv, (2, 2), ((1, 1), (1, 1)))
      return jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(x, w)
    for a, b in zip(jax.tree_util.tree_leaves(grads(layers.cpu_conv)),
                    jax.tree_util.tree_leaves(grads(jax.lax.conv_general_dilated))):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)


class InterleavedChunksTest(absltest.TestCase):

  def test_weight_gradient_matches_lax_and_the_contiguous_chunks(self):
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(48, 6, 6, 4)), jnp.float32)  # 3 chunks of 16.
    w = jnp.asarray(rng.normal(size=(3, 3, 4, 8)), jnp.float32)
    grad = lambda conv: jax.jit(jax.grad(functools.partial(_loss, conv, (1, 1), 'SAME'),
                                         argnums=1))(x, w)
    want = grad(jax.lax.conv_general_dilated)
    np.testing.assert_allclose(grad(layers.cpu_conv_split_batch), want, rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(grad(layers.cpu_conv), want, rtol=2e-5, atol=2e-4)
    # Each chunk's examples: interleaved i, i+3, ... (not 16i..16i+15).
    conv = lambda l, r: jax.lax.conv_general_dilated(l, r, (1, 1), 'SAME', dimension_numbers=DN)
    seen = []
    spy = lambda l, r: seen.append(l.shape) or conv(l, r)
    g = jnp.ones((48, 6, 6, 8))
    layers._chunked_weight_grad(spy, x, w, g, 16, interleave=True)
    self.assertEqual(seen, [(16, 6, 6, 4)] * 3)
    first = layers._chunked_weight_grad(lambda l, r: conv(l, r), x[0::3], w, g[0::3], 16)
    alone = jax.vjp(lambda r: conv(x[0::3], r), w)[1](g[0::3])[0]
    np.testing.assert_allclose(first, alone, rtol=1e-6)


def _numpy_pool_grad(x, g):
  """Gradient of a 2x2/2 max pool: each window's cotangent goes to its (unique) maximum."""
  out = np.zeros_like(x)
  n, h, w, c = x.shape
  for i in range(0, h, 2):
    for j in range(0, w, 2):
      window = x[:, i:i + 2, j:j + 2, :].reshape(n, -1, c)
      k = window.argmax(axis=1)
      for b in range(n):
        for ch in range(c):
          di, dj = divmod(int(k[b, ch]), 2)
          out[b, i + di, j + dj, ch] = g[b, i // 2, j // 2, ch]
  return out


class MaxPoolTest(parameterized.TestCase):

  @parameterized.parameters((8, 8), (7, 5))  # Odd sizes: SAME pads with -inf.
  def test_values_and_gradient(self, h, w):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, h, w, 3)).astype(np.float32)  # No ties: a unique maximum.
    want = nn.max_pool(jnp.asarray(x), (2, 2), strides=(2, 2), padding='SAME')
    got = layers.max_pool_2x2(jnp.asarray(x))
    np.testing.assert_array_equal(got, want)
    g = rng.normal(size=want.shape).astype(np.float32)
    grad = jax.vjp(layers.max_pool_2x2, jnp.asarray(x))[1](jnp.asarray(g))[0]
    padded = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
    np.testing.assert_array_equal(grad, _numpy_pool_grad(padded, g)[:, :h, :w])

  def test_tied_maxima_share_the_gradient(self):
    x = jnp.asarray([[1., 1.], [0., -1.]]).reshape(1, 2, 2, 1)
    grad = jax.grad(lambda a: layers.max_pool_2x2(a).sum())(x)
    np.testing.assert_array_equal(grad.reshape(2, 2), [[0.5, 0.5], [0., 0.]])


class LeNetOnCpuTest(absltest.TestCase):

  def test_gradients_are_bitwise_reproducible_across_compilations(self):
    # Two real compilations: without this, a persistent cache a study in this process turned
    # on (or an earlier test run's) would hand the second call the first one's executable.
    saved = jax.config.jax_compilation_cache_dir
    compile_cache.configure("")
    self.addCleanup(jax_cache.reset_cache)  # Runs last: JAX opens the restored folder anew.
    self.addCleanup(jax.config.update, "jax_compilation_cache_dir", saved)
    model = models.LeNet5(num_classes=4)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(32, 16, 16, 3)), jnp.float32)
    variables = jax.jit(model.init, compiler_options=step.compiler_options())(
        jax.random.key(0), x[:1])
    def grads():  # A new function object each time: a new trace and compilation.
      return jax.jit(jax.grad(lambda v: jnp.sum(jnp.sin(model.apply(v, x)))))(variables)
    loaded = []  # A program loaded from the persistent cache would make these two one program.
    listener = lambda event, **_: loaded.append(event) if event.endswith("/cache_hits") else None
    jax.monitoring.register_event_listener(listener)
    try:
      first, second = grads(), grads()
    finally:
      jax.monitoring.unregister_event_listener(listener)
    self.assertEqual(loaded, [])
    for a, b in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second)):
      np.testing.assert_array_equal(a, b)


class ChunkedWeightGradConvTest(parameterized.TestCase):
  """The CPU convolution has XLA's value and gradients, with the weight gradient chunked."""

  @parameterized.named_parameters(
      ('3x3_stride1', 32, (3, 3), (1, 1), ((1, 1), (1, 1))),
      ('3x3_stride2', 32, (3, 3), (2, 2), ((1, 1), (1, 1))),
      ('1x1_stride2_projection', 32, (1, 1), (2, 2), ((0, 0), (0, 0))),
      ('batch_not_a_multiple_of_the_chunk', 20, (3, 3), (1, 1), 'SAME'),
  )
  def test_matches_lax_conv(self, batch, kernel, strides, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, 8, 8, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=kernel + (3, 5)), jnp.float32)
    dn = ('NHWC', 'HWIO', 'NHWC')

    def loss(conv, x, w):  # A non-linear loss: every output's cotangent differs.
      y = conv(x, w, strides, padding, dimension_numbers=dn)
      return jnp.sum(jnp.sin(y))

    def value_and_grads(conv):
      return jax.jit(jax.value_and_grad(functools.partial(loss, conv), argnums=(0, 1)))(x, w)

    want = value_and_grads(jax.lax.conv_general_dilated)
    got = value_and_grads(layers.cpu_conv)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)
    # The chunked path was taken where the batch divides: one weight-gradient conv per chunk.
    hlo = jax.jit(jax.grad(functools.partial(loss, layers.cpu_conv),
                           argnums=1)).lower(x, w).as_text()
    chunks = batch // layers.WEIGHT_GRAD_CHUNK if batch % layers.WEIGHT_GRAD_CHUNK == 0 else 1
    self.assertEqual(hlo.count('stablehlo.convolution'), 1 + chunks)

  def test_under_vmap_over_stacked_members(self):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 32, 6, 6, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(2, 3, 3, 2, 4)), jnp.float32)
    def grads(conv):
      loss = lambda x, w: jnp.sum(jnp.cos(conv(x, w, (1, 1), 'SAME', dimension_numbers=(
          'NHWC', 'HWIO', 'NHWC'))))
      return jax.jit(jax.vmap(jax.grad(loss, argnums=1)))(x, w)
    np.testing.assert_allclose(grads(layers.cpu_conv),
                               grads(jax.lax.conv_general_dilated), rtol=2e-5, atol=2e-4)


if __name__ == '__main__':
  absltest.main()
