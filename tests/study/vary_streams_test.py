"""config.vary governs every per-run random stream: init keys, data order and the step keys
(ODS / Gaussian perturbations). Runs that differ in nothing are bitwise identical also for a
method that perturbs its inputs; runs that differ in data draw different perturbations."""

from absl.testing import absltest
import numpy as np

from churn_jax import data as data_lib, methods
from churn_jax.configs import config_lib
from churn_jax.study import train
from tests import testing


def _config(vary):
  config = testing.tiny_config(num_runs=2, num_steps=3, methods="noise_distill")
  config.method_configs = config_lib.all_method_configs(0.2, 0.05, 1.0, 0.5, noise_std=40.0)
  config.vary = vary
  return config


def _train_student(config):
  dataset = data_lib.get_dataset(config.data)
  build = lambda n: methods.build(n, config.method_configs[n], config.num_train_steps)
  teacher = train.train_method(config, dataset, build("ensemble2")).state
  return train.train_method(config, dataset, build("noise_distill"), teacher=teacher)


class VaryStreamsTest(absltest.TestCase):

  def test_run_keys_follow_data(self):
    same = np.asarray(train.run_keys(0, [0, 1, 2], vary_data=False))
    differ = np.asarray(train.run_keys(0, [0, 1, 2], vary_data=True))
    self.assertTrue((same == same[0]).all())
    self.assertEqual(len({tuple(k) for k in differ}), 3)
    np.testing.assert_array_equal(differ[0], same[0])  # Run 0 is the same run either way.

  def test_state_rng_is_wired_to_vary(self):
    dataset = data_lib.get_dataset(_config("").data)
    method = methods.build("baseline", _config("").method_configs["baseline"], 3)
    for vary, equal in (("", True), ("init", True), ("data", False), ("init,data", False)):
      state = train._setup(_config(vary), dataset, method, None, None, None)[-1]
      rng = np.asarray(state.rng)
      self.assertEqual(bool((rng[0] == rng[1]).all()), equal, vary)

  def test_gaussian_student_runs_identical_when_nothing_varies(self):
    probs = _train_student(_config("")).member_probs
    np.testing.assert_array_equal(probs[0], probs[1])  # Same init, data and noise: same bits.


if __name__ == "__main__":
  absltest.main()
