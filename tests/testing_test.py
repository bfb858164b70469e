"""tests/testing.py's shared_dir: built once however many workers ask, rebuilt when the key
changes, never left half-built."""

import os
import tempfile
import threading
import time
from unittest import mock

from absl.testing import absltest
import ml_collections

from tests import testing


class SharedDirTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    root = tempfile.mkdtemp()
    patcher = mock.patch.dict(os.environ, {"CHURN_JAX_TEST_SHARED": root})
    patcher.start()
    self.addCleanup(patcher.stop)
    self.builds = []

  def build(self, path):
    self.builds.append(path)
    time.sleep(0.2)  # Long enough for the other callers to arrive while it builds.
    os.makedirs(path)
    with open(os.path.join(path, "out"), "w") as f:
      f.write("done")

  def test_concurrent_callers_build_once_and_all_see_the_whole_result(self):
    config = ml_collections.ConfigDict(dict(a=1))
    got = []
    # Separate open() calls: flock excludes them as it excludes two worker processes.
    threads = [threading.Thread(target=lambda: got.append(
        testing.shared_dir("x", config, self.build))) for _ in range(4)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    self.assertLen(self.builds, 1)
    self.assertLen(set(got), 1)
    with open(os.path.join(got[0], "out")) as f:
      self.assertEqual(f.read(), "done")

  def test_other_config_or_name_builds_anew(self):
    a = testing.shared_dir("x", ml_collections.ConfigDict(dict(a=1)), self.build)
    b = testing.shared_dir("x", ml_collections.ConfigDict(dict(a=2)), self.build)
    c = testing.shared_dir("y", ml_collections.ConfigDict(dict(a=1)), self.build)
    self.assertLen({a, b, c}, 3)
    self.assertEqual(testing.shared_dir("x", ml_collections.ConfigDict(dict(a=1)), self.build), a)
    self.assertLen(self.builds, 3)

  def test_failed_build_leaves_nothing_and_the_next_call_builds(self):
    config = ml_collections.ConfigDict(dict(a=1))
    def fail(path):
      os.makedirs(path)
      raise RuntimeError("build failed")
    with self.assertRaisesRegex(RuntimeError, "build failed"):
      testing.shared_dir("x", config, fail)
    path = testing.shared_dir("x", config, self.build)
    self.assertLen(self.builds, 1)
    self.assertTrue(os.path.exists(os.path.join(path, "out")))

  def test_key_covers_the_sources(self):
    config = ml_collections.ConfigDict(dict(a=1))
    a = testing.shared_dir("x", config, self.build)
    with mock.patch.object(testing, "_sources_hash", return_value="changed"):
      b = testing.shared_dir("x", config, self.build)
    self.assertNotEqual(a, b)


if __name__ == "__main__":
  absltest.main()
