"""The trainer with config.steps_per_loop = k (blocks of k steps in one program) and its
throughput record (engine/throughput.py), on the tiny study."""

import json
import os
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax import methods
from churn_jax.engine import throughput
from churn_jax.outputs import observer, tensorboard
from churn_jax.study import train, validate
from tests import testing


def _run(steps_per_loop, num_steps=7):
  config = testing.tiny_config(num_runs=2, num_steps=num_steps)
  config.steps_per_loop = steps_per_loop
  method = methods.build("codistill", config.method_configs["codistill"], num_steps)
  return train.train_method(config, testing.tiny_dataset(), method)


class StepsPerLoopTrainerTest(absltest.TestCase):

  def test_blocks_with_a_tail_equal_single_steps_bitwise(self):
    # 7 steps in blocks of 3: two blocks and one single step; logs at 2, 4, 6 fall inside.
    single, blocked = _run(1), _run(3)
    self.assertEqual(int(blocked.state.step), 7)
    np.testing.assert_array_equal(single.member_probs, blocked.member_probs)
    np.testing.assert_array_equal(single.final_losses, blocked.final_losses)
    for out in (single, blocked):  # Throughput measured after the first (compiling) step.
      self.assertGreater(out.throughput["examples_per_second"], 0)
      self.assertAlmostEqual(out.throughput["examples_per_second"],
                             2 * 8 / out.throughput["step_seconds"], delta=1e-6 *
                             out.throughput["examples_per_second"])
      self.assertGreater(out.throughput["flops_per_step"], 0)

  def test_study_writes_throughput_to_timings(self):
    config = testing.tiny_config(num_runs=2, num_steps=4, methods="baseline")
    config.steps_per_loop = 2
    config.profile_steps = "2:2"  # A jax.profiler trace of steps 2..3 into WORKDIR/profile.
    with tempfile.TemporaryDirectory() as workdir:
      train.train_and_evaluate(config, workdir)
      with open(os.path.join(workdir, "timings.json")) as f:
        timings = json.load(f)["baseline"]
      traces = [f for _, _, files in os.walk(os.path.join(workdir, "profile")) for f in files]
      # Throughput in TensorBoard (stack-wide), not in the reproducible curves file.
      tb = tensorboard.read_scalars(os.path.join(workdir, tensorboard.DIRNAME, "baseline",
                                                 "pairs"))
      with open(observer.curves_path(workdir, "baseline")) as f:
        curves = f.read()
    self.assertTrue(any(f.endswith(".xplane.pb") for f in traces), traces)
    self.assertIn("perf/examples_per_second", tb)
    self.assertNotIn("perf/", curves)
    for key in ("examples_per_second", "step_seconds", "flops_per_step",
                "achieved_flops_per_second"):
      self.assertGreater(timings[key], 0, key)
    self.assertNotIn("mfu", timings)  # No peak known for a CPU.

  def test_bad_values_are_one_line_errors(self):
    for key, value, words in (("steps_per_loop", 0, "steps_per_loop"),
                              ("microbatches", 3, "divisible by microbatches"),
                              ("compute_dtype", "float16", "compute_dtype"),
                              ("matmul_precision", "fast", "matmul_precision"),
                              ("remat", 1, "remat"), ("profile_steps", "5", "profile_steps")):
      config = testing.tiny_config(num_runs=2)
      config[key] = value
      with self.assertRaisesRegex(ValueError, words):
        validate.validate_config(config)


class PeakTableTest(absltest.TestCase):

  def test_peaks_by_device_kind(self):
    self.assertEqual(throughput.peak_flops("NVIDIA H200", "bfloat16"), 989e12)
    self.assertEqual(throughput.peak_flops("TPU v5p", "bfloat16"), 459e12)
    self.assertEqual(throughput.peak_flops("TPU v5 lite", "float32"), 197e12)
    self.assertIsNone(throughput.peak_flops("cpu", "float32"))
    meter = throughput.Meter(100, flops_per_step=1e9, peak=1e12)
    meter.first, meter.last = (1, 10.0), (11, 12.0)  # 10 steps in 2 s.
    self.assertEqual(meter.summary(), {
        "steps_per_second": 5.0, "step_seconds": 0.2, "examples_per_second": 500.0,
        "flops_per_step": 1e9, "achieved_flops_per_second": 5e9, "mfu": 5e-3})


if __name__ == "__main__":
  absltest.main()
