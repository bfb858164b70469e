"""The values issue 28 found accepted silently are refused, each naming its key, without JAX."""

import subprocess
import sys

from absl.testing import absltest, parameterized
import numpy as np

from churn_jax.study import config_checks, validate
from tests import testing
from tests.study.validate_test import with_changes


class ConfigChecksTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("methods_twice", dict(methods="baseline,baseline"), "config.methods names 'baseline' more than once"),
      ("keep_zero", dict(checkpoints_to_keep=0), "checkpoints_to_keep must be >= 1 .*resume"),
      ("log_zero", dict(log_every_steps=0), "log_every_steps must be >= 1"),
      ("eval_negative", dict(eval_every_steps=-1), "eval_every_steps must be >= 0"),
      ("seed_negative", dict(seed=-1), "seed must be >= 0"),
      ("warmup_negative", dict(lr__warmup_steps=-5), "lr.warmup_steps must be >= 0, got -5"),
      ("momentum_two", dict(optimizer__momentum=2.0), r"optimizer.momentum must lie in \[0, 1\)"),
      ("weight_decay_negative", dict(optimizer__weight_decay=-1.0),
       "optimizer.weight_decay must be >= 0"),
      ("decay_factor_zero", dict(lr__decay_factor=0.0), r"lr.decay_factor must lie in \(0, 1\]"),
  )
  def test_refused_naming_the_key(self, changes, message):
    config = with_changes(**changes)
    with self.assertRaisesRegex(ValueError, "invalid config: " + message):
      config_checks.check_values(config)
    with self.assertRaisesRegex(ValueError, "invalid config: " + message):
      validate.validate_config(config)  # The library path says the same.

  def test_legitimate_values_pass(self):
    config = testing.tiny_config()
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 0
    config.optimizer.momentum = 0.0
    config_checks.check_values(config)

  def test_no_jax_import(self):
    code = ("import sys; from churn_jax.study import config_checks; "
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    self.assertEqual(out.stdout.strip(), "False")

  def test_one_class_training_data_refused(self):
    class OneClass:
      num_classes = 1
      num_train = 10
      y_train = np.zeros(10, np.int32)
    config = testing.tiny_config()
    with self.assertRaisesRegex(ValueError, "training data has 1 class"):
      validate.validate_with_dataset(config, OneClass())
    OneClass.num_classes = 10  # Declared 10 classes, but only one present.
    with self.assertRaisesRegex(ValueError, "training data has 1 class"):
      validate.validate_with_dataset(config, OneClass())


if __name__ == "__main__":
  absltest.main()
