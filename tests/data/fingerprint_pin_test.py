"""The generated-data fingerprint covers array contents, not only dtype and shape (issue 25
item 7)."""

from absl.testing import absltest
import numpy as np

from churn_jax.data import dataset


class FingerprintTest(absltest.TestCase):

  def test_contents_change_the_fingerprint(self):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = a.copy()
    b[1, 2] += 1
    self.assertNotEqual(dataset.arrays_sha256(a), dataset.arrays_sha256(b))
    self.assertEqual(dataset.arrays_sha256(a), dataset.arrays_sha256(a.copy()))
    self.assertNotEqual(dataset.arrays_sha256(a), dataset.arrays_sha256(a.reshape(4, 3)))


if __name__ == "__main__":
  absltest.main()
