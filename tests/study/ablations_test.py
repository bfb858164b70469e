"""launch/ablations.py: the studies name existing method entries and the fidelity measures
agree with a hand computation."""

from absl.testing import absltest
import numpy as np

from churn_jax.configs import config_lib
from tests import testing


def _module():
  return testing.load_file("launch/ablations.py", "ablations_under_test")


class AblationsTest(absltest.TestCase):

  def test_studies_name_existing_entries(self):
    m = _module()
    cfgs = config_lib.all_method_configs(0.1, 0.01, 1.0)
    for study, (plain, spec, reference, _) in m.STUDIES.items():
      names = set(plain) | {p.split(":")[0] for p in spec.split(";") if p}
      self.assertContainsSubset(names | {reference}, set(cfgs), study)
      self.assertIn(reference, plain, study)
    self.assertEqual(m.STUDIES["anti_distill"][2], "ensemble2_shared")

  def test_fidelity_by_hand(self):
    m = _module()
    teacher = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.5, 0.5]]])  # (R=2, N=2, K=2)
    student = np.array([[[0.7, 0.3], [0.6, 0.4]], [[0.6, 0.4], [0.5, 0.5]]])
    f = m.fidelity(student, teacher)
    self.assertAlmostEqual(f["agreement"][0], (0.5 + 1.0) / 2)
    kl0 = np.mean([0.9 * np.log(0.9 / 0.7) + 0.1 * np.log(0.1 / 0.3),
                   0.2 * np.log(0.2 / 0.6) + 0.8 * np.log(0.8 / 0.4)])
    self.assertAlmostEqual(f["kl"][0], kl0 / 2, places=6)  # Run 1 copies its teacher: KL 0.


if __name__ == "__main__":
  absltest.main()
