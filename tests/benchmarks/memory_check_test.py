"""The wiring of benchmarks/memory_check.py (the per-device memory table of paper_scale.py).

Pinned on a tiny paper config (SVHN's LeNet-5, R = 2, batch 32): the arguments of the compiled
per-device step are the state plus this device's block of the batch (computed here from the
abstract shapes); splitting the batch over 4 devices shrinks the per-device bytes; micro-batches
shrink the temporaries; the vmap stack's grouped convolutions are gathered over 'data' (the
finding that made the paper configs ship the loop strategy) and the loop's are not; the
verdict's threshold is 80% of HBM. The compiles need 4 devices, requested before JAX starts,
so they (ChildTest) run in the shared 8-device child process, tests/device_child.py, which
step_memory's first 4 devices serve.
"""

import math
import os
import sys

from absl.testing import absltest
import jax
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(_ROOT, "benchmarks"))
import memory_check  # pylint: disable=g-import-not-at-top,wrong-import-position

from churn_jax.configs import paper_recipes  # pylint: disable=g-import-not-at-top
from churn_jax.study import settings  # pylint: disable=g-import-not-at-top
from tests import device_child  # pylint: disable=g-import-not-at-top


def _config(strategy="loop", microbatches=1):
  config = paper_recipes.svhn_config("runlocal")
  config.batch_size, config.strategy, config.microbatches = 32, strategy, microbatches
  return config


def _nbytes(tree) -> int:
  return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
             for x in jax.tree_util.tree_leaves(tree))


class VerdictTest(absltest.TestCase):

  def test_threshold_is_80_percent_of_hbm(self):
    hbm = 16 * 2**30
    self.assertEqual(memory_check.verdict(int(0.8 * hbm), hbm), "fits")
    self.assertEqual(memory_check.verdict(int(0.8 * hbm) + 1, hbm), "does not fit")
    self.assertEqual(memory_check.verdict(13 * 2**30, hbm), "does not fit")  # 81%.

  def test_per_device_counts_the_donated_state_once(self):
    m = memory_check.StepMemory(mesh=(1, 1, 8), arguments=100, outputs=70, alias=60,
                                temporaries=1000, code=5)
    self.assertEqual(m.per_device, 100 + 70 - 60 + 1000 + 5)

  def test_recommended_targets_are_the_shipped_configs(self):
    shipped = {f[:-3] for f in os.listdir(os.path.join(_ROOT, "experiments"))
               if f[:-3] in ("cifar10", "cifar100", "svhn", "imagenet", "inaturalist")}
    self.assertEqual(set(memory_check.RECOMMENDED), shipped)
    for target in memory_check.RECOMMENDED.values():
      self.assertIn(target, memory_check.TARGETS)
    with open(os.path.join(_ROOT, "docs", "TPU.md")) as f:
      doc = f.read()
    for name, target in memory_check.RECOMMENDED.items():  # The doc's table says the same.
      self.assertIn(f"| {name} (", doc)
      self.assertRegex(doc, rf"\| {name} \([^\n]*\| {target} \|")

  @device_child.parent
  def test_compiles_on_4_devices(self):
    device_child.assert_passed(self, __file__)


class ChildTest(absltest.TestCase):

  def test_memory_of_the_sharded_step(self):
    self.assertGreaterEqual(jax.device_count(), 4)  # step_memory takes the first n.
    config = _config()
    (_, method), = [v for k, v in memory_check.build_methods(config).items() if k == 1]
    one = memory_check.step_memory(config, method, 1)
    four = memory_check.step_memory(config, method, 4)
    self.assertEqual((one.mesh, four.mesh), ((1, 1, 1), (1, 1, 4)))
    # Arguments: the whole state (replicated: the loop splits only 'data') and this device's
    # quarter of the batch, from the abstract shapes.
    _, state, batch, _ = memory_check.sharded_step(config, method, 4)
    self.assertEqual(one.arguments, _nbytes(state) + _nbytes(batch))
    self.assertEqual(four.arguments, _nbytes(state) + _nbytes(batch) // 4)
    self.assertEqual(four.alias, _nbytes(state))  # The donated state, written in place.
    self.assertLess(four.temporaries, 0.4 * one.temporaries)
    self.assertLess(four.per_device, one.per_device - 0.6 * one.temporaries)
    self.assertEqual(four.all_gathers, 0)
    # Micro-batches: one slice's activations live at a time (a lax.scan).
    micro = memory_check.step_memory(_config(microbatches=4), method, 1)
    self.assertLess(micro.temporaries, 0.5 * one.temporaries)
    self.assertEqual(micro.arguments, one.arguments)
    # The config's numerics reach the step: bf16 activations take fewer bytes.
    self.assertEqual(settings.numerics_of(config).compute_dtype, "float32")  # runlocal's.
    config.compute_dtype = "bfloat16"
    self.assertLess(memory_check.step_memory(config, method, 1).temporaries,
                    0.8 * one.temporaries)
    # vmap: the stack's grouped convolutions are gathered over 'data' on every device.
    config = _config("vmap")
    config.mesh = "data=-1"  # config.mesh reaches the compiled step (auto would split runs).
    vmap = memory_check.step_memory(config, method, 4)
    self.assertEqual(vmap.mesh, (1, 1, 4))
    self.assertGreater(vmap.all_gathers, 0)


CHILD_TESTS = absltest.TestLoader().getTestCaseNames(ChildTest)
if not device_child.RUNNING:
  del ChildTest  # Collected only in tests/device_child.py, which has the devices it needs.

if __name__ == "__main__":
  absltest.main()
