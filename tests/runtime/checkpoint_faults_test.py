"""Damaged checkpoints are rejected by name and training on gives the same bits; NaN messages.

Each kind of damage of the issue (a flipped bit, 64 garbage bytes, a truncated file, arrays
that do not match their checksum, non-finite values, every checkpoint bad) is injected into a
copy of a tiny stack's checkpoints (tests/runtime/faults_test.py has the study-level faults).
"""

import contextlib
import glob
import io
import os
import re
import shutil
import tempfile

from absl.testing import absltest
import jax
import numpy as np

from churn_jax import methods
from churn_jax.runtime import checkpoint
from churn_jax.study import train
from tests import testing


def read(path):
  with open(path, "rb") as f:
    return f.read()



class CheckpointFaultTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.config = testing.tiny_config(num_runs=2, num_steps=6)
    cls.ds = testing.tiny_dataset()
    cls.method = methods.build("baseline", cls.config.method_configs["baseline"], 6)
    cls.pristine = os.path.join(cls.tmp, "pristine")
    ckpt = checkpoint.MethodCheckpointer(cls.pristine, 2, max_to_keep=2)
    cls.full = train.train_method(cls.config, cls.ds, cls.method, checkpointer=ckpt)
    ckpt.close()
    assert sorted(os.listdir(cls.pristine)) == ["4", "6"]

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp)
    super().tearDownClass()

  def resume_after(self, damage, expect_step, reason, train_on=False):
    """Damages a copy of the checkpoints, restores, checks the warning; `train_on`: the bits.

    Training on after a fallback is compared bitwise for two faults (each costs a compile).
    """
    directory = tempfile.mkdtemp(dir=self.tmp)
    shutil.copytree(self.pristine, directory, dirs_exist_ok=True)
    damage(directory)
    ckpt = checkpoint.MethodCheckpointer(directory, 2, max_to_keep=2)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      state, step = ckpt.restore_latest(self.full.state)
    self.assertEqual(step, expect_step)
    warnings = out.getvalue()
    self.assertIn(f"checkpoint {os.path.join(directory, '6')} is rejected: ", warnings)
    self.assertRegex(warnings, reason)
    if expect_step:
      self.assertEqual(int(state.step), expect_step)
    self.assertNotIn("6", os.listdir(directory))  # Deleted: it never blocks a later save.
    if train_on:
      again = train.train_method(self.config, self.ds, self.method, checkpointer=ckpt)
      np.testing.assert_array_equal(again.member_probs, self.full.member_probs)
      # The rejected checkpoint was replaced by a good one: nothing to delete by hand.
      self.assertEqual(ckpt.restore_latest(self.full.state)[1], 6)
    ckpt.close()
    return warnings

  def _data_files(self, directory, step="6"):
    # The array data (OCDBT data files in .../d/), never the JSON metadata. A data file also
    # holds index nodes and may hold bytes no array uses, so every data file is damaged: a
    # fault in one chosen byte could land where the restore never reads.
    files = [p for p in glob.glob(f"{directory}/{step}/state/**/d/*", recursive=True)
             if os.path.isfile(p)]
    self.assertNotEmpty(files, f"no array data files in {directory}/{step}/state")
    return files

  def test_flipped_bit(self):
    def flip(directory):
      for path in self._data_files(directory):
        data = bytearray(read(path))
        data[len(data) // 2] ^= 0x10
        with open(path, "wb") as f:
          f.write(data)
    self.resume_after(flip, 4, "do not match the checksum|unreadable", train_on=True)

  def test_garbage_bytes(self):
    def garbage(directory):
      for path in self._data_files(directory):
        data = bytearray(read(path))
        lo = len(data) // 4
        data[lo:lo + 64] = np.random.default_rng(0).integers(0, 256, 64, np.uint8).tobytes()
        with open(path, "wb") as f:
          f.write(data[:len(read(path))])
    self.resume_after(garbage, 4, "do not match the checksum|unreadable")

  def test_truncated_file(self):
    def truncate(directory):
      for path in self._data_files(directory):
        os.truncate(path, os.path.getsize(path) // 2)
    self.resume_after(truncate, 4, "unreadable")

  def test_arrays_that_do_not_match_their_checksum(self):
    def wrong_checksum(directory):
      (path,) = [p for p in glob.glob(f"{directory}/6/checksum/*") if "commit" not in p]
      text = read(path).decode()
      digest = re.search(r"[0-9a-f]{64}", text).group(0)
      with open(path, "w") as f:
        f.write(text.replace(digest, "0" * 64))
    self.resume_after(wrong_checksum, 4, "do not match the checksum")

  def test_non_finite_checkpoint(self):
    def nan_params(directory):
      shutil.rmtree(f"{directory}/6")
      ckpt = checkpoint.MethodCheckpointer(directory, 2, max_to_keep=3)
      bad = self.full.state.replace(params=jax.tree_util.tree_map(
          lambda x: x.at[(0,) * x.ndim].set(np.nan), self.full.state.params))
      ckpt.save(6, bad)  # A valid checksum of non-finite values.
      ckpt.close()
    self.resume_after(nan_params, 4, "non-finite")

  def test_all_checkpoints_bad_starts_afresh(self):
    def truncate_all(directory):
      for step in ("4", "6"):
        for path in self._data_files(directory, step):
          os.truncate(path, 10)
    warnings = self.resume_after(truncate_all, 0, "unreadable", train_on=True)
    self.assertIn("no checkpoint left, starting this method afresh", warnings)

  def test_checksum_detects_any_single_bit_flip(self):
    tree = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "k": np.arange(4, dtype=np.uint32)}
    digest, finite = checkpoint.checksum(tree)
    self.assertTrue(finite)
    for leaf in ("w", "k"):
      raw = tree[leaf].reshape(-1).view(np.uint8)
      for byte in (0, 5, raw.size - 1):
        for bit in (0, 7):
          flipped = raw.copy()
          flipped[byte] ^= 1 << bit
          changed = dict(tree, **{leaf: flipped.view(tree[leaf].dtype).reshape(tree[leaf].shape)})
          self.assertNotEqual(checkpoint.checksum(changed)[0], digest, (leaf, byte, bit))


class NanMessageTest(absltest.TestCase):

  def _diverge(self, checkpointer):
    config = testing.tiny_config(num_runs=2, num_steps=6)
    config.lr.base = 1e30
    config.lr.warmup_steps = 3  # lr is 0 at step 1: step 1 is good.
    config.log_every_steps = 1
    method = methods.build("codistill", config.method_configs["codistill"], 6)
    with self.assertRaises(FloatingPointError) as caught:
      train.train_method(config, testing.tiny_dataset(), method, checkpointer=checkpointer)
    return str(caught.exception)

  def test_message_names_the_kept_checkpoint(self):
    with tempfile.TemporaryDirectory() as tmp:
      ckpt = checkpoint.MethodCheckpointer(tmp, 1)
      message = self._diverge(ckpt)
      kept = ckpt.latest_step()
      ckpt.close()
    self.assertIsNotNone(kept)
    self.assertIn(f"the last good checkpoint (step {kept}) is kept", message)

  def test_message_says_when_no_checkpoint_exists(self):
    message = self._diverge(None)
    self.assertIn("no checkpoint had been written", message)
    self.assertNotIn("kept", message)


if __name__ == "__main__":
  absltest.main()
