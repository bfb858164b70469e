"""The persistent compilation cache (churn_jax/runtime/compile_cache.py): where it lives, that a
second study loads every program from it with bitwise-equal results, and that damaged
entries (a process killed mid-write, flipped bytes) are removed before JAX reads them."""

import json
import os
import subprocess
import sys
import shutil
import tempfile
from unittest import mock
import zlib

from absl.testing import absltest
import jax

from churn_jax.runtime import compile_cache
from churn_jax.study import validate
from tests import testing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_AVX2 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
         "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n")


def _cpus(text: str, count: int) -> str:
  return "\n".join(text.replace("processor\t: 0", f"processor\t: {i}") for i in range(count))


def _tempdir(test) -> str:
  path = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, path, True)
  return path


def _entries(path):
  return sorted(n for n in os.listdir(path) if n.endswith("-cache"))


class DirectoryTest(absltest.TestCase):

  def test_off_auto_and_explicit(self):
    self.assertIsNone(compile_cache.directory(""))
    tag = compile_cache.machine_tag(_AVX2)
    with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": "/x/cache"}):
      self.assertEqual(compile_cache.directory("auto", _AVX2),
                       os.path.join("/x/cache/churn_jax/xla", tag))
    self.assertEqual(compile_cache.directory("gs://b/xla/", _AVX2), f"gs://b/xla/{tag}")
    with self.assertRaisesRegex(ValueError, "compile_cache_dir must be a string"):
      compile_cache.directory(3)

  def test_several_processes_share_one_cache_in_the_workdir(self):
    # JAX writes entries from process 0 only: each host's own ~/.cache would fill on host 0
    # alone, so with several processes "auto" is a directory every host sees.
    tag = compile_cache.machine_tag(_AVX2)
    self.assertEqual(compile_cache.directory("auto", _AVX2, "gs://b/w/", process_count=2),
                     f"gs://b/w/compile_cache/{tag}")
    with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": "/x/cache"}):
      self.assertEqual(compile_cache.directory("auto", _AVX2, "gs://b/w", process_count=1),
                       os.path.join("/x/cache/churn_jax/xla", tag))
    self.assertEqual(compile_cache.directory("/nfs/xla", _AVX2, "gs://b/w", process_count=4),
                     f"/nfs/xla/{tag}")

  def test_one_directory_per_instruction_set_not_per_core_count(self):
    avx512 = _AVX2.replace("avx2 fma", "avx2 fma avx512f avx512bw")
    zen4 = _AVX2.replace("model\t\t: 1", "model\t\t: 17")  # Same "model name", other CPU.
    tags = {compile_cache.machine_tag(t) for t in (_AVX2, avx512, zen4)}
    self.assertLen(tags, 3)
    self.assertEqual(compile_cache.machine_tag(_cpus(_AVX2, 2)),
                     compile_cache.machine_tag(_cpus(_AVX2, 16)))

  def test_validation_refuses_a_non_string(self):
    config = testing.tiny_config()
    with config.ignore_type():  # A user's config file may set any type.
      config.compile_cache_dir = 3
    with self.assertRaisesRegex(ValueError, "compile_cache_dir must be a string"):
      validate.validate_config(config)


class RepairTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = _tempdir(self)
    self.good = zlib.compress(os.urandom(4000))  # What JAX writes when zstd is absent.

  def _write(self, name, data):
    with open(os.path.join(self.dir, name), "wb") as f:
      f.write(data)
    return os.path.join(self.dir, name)

  def test_removes_what_does_not_decode_and_keeps_the_rest(self):
    flipped = bytearray(self.good)
    flipped[len(flipped) // 2] ^= 0xFF
    self._write("good-cache", self.good)
    self._write("truncated-cache", self.good[:len(self.good) // 2])
    self._write("flipped-cache", bytes(flipped))
    self._write("empty-cache", b"")
    self._write("good-atime", b"12345678")  # Not an entry: left alone.
    removed = compile_cache.repair(self.dir)
    self.assertCountEqual(removed, ["truncated-cache", "flipped-cache", "empty-cache"])
    self.assertEqual(sorted(os.listdir(self.dir)),
                     ["churn_jax_verified.json", "good-atime", "good-cache"])
    with open(os.path.join(self.dir, "churn_jax_verified.json")) as f:
      self.assertEqual(list(json.load(f)), ["good-cache"])

  def test_an_entry_is_read_once_until_it_changes(self):
    path = self._write("good-cache", self.good)
    compile_cache.repair(self.dir)
    stat = os.stat(path)
    self._write("good-cache", b"\0" * len(self.good))  # Same size, bad content...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...same time: not read again.
    self.assertEqual(compile_cache.repair(self.dir), [])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # Changed: read, removed.
    self.assertEqual(compile_cache.repair(self.dir), ["good-cache"])

  def test_unusable_directory_turns_the_cache_off(self):
    blocker = self._write("a_file", b"x")  # A file where the directory should be.
    self.addCleanup(compile_cache.configure, "")
    with self.assertLogs(level="WARNING") as logs:
      self.assertIsNone(compile_cache.configure(blocker))
    self.assertIn("compile cache off", logs.output[0])
    self.assertIsNone(jax.config.jax_compilation_cache_dir)
    on = compile_cache.configure(self.dir)
    self.assertEqual(jax.config.jax_compilation_cache_dir, on)
    self.assertTrue(on.startswith(self.dir))
    compile_cache.configure("")
    self.assertIsNone(jax.config.jax_compilation_cache_dir)

  def test_configure_puts_a_multi_process_cache_in_the_workdir(self):
    self.addCleanup(compile_cache.configure, "")
    with mock.patch.object(compile_cache.jax, "process_count", return_value=2):
      path = compile_cache.configure("auto", workdir=self.dir)
    self.assertEqual(path, os.path.join(self.dir, "compile_cache", compile_cache.machine_tag()))
    self.assertEqual(jax.config.jax_compilation_cache_dir, path)
    self.assertTrue(os.path.isdir(path))

  def test_a_process_can_switch_directories_and_turn_the_cache_off(self):
    # JAX opens its cache once per process; a notebook or test that configures again must
    # get the new directory, not the first one.
    self.addCleanup(compile_cache.configure, "")
    self.addCleanup(jax.config.update, "jax_persistent_cache_min_compile_time_secs",
                    jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    first = compile_cache.configure(os.path.join(self.dir, "a"))
    jax.jit(lambda x: x * 3 + 1)(1.0)
    second = compile_cache.configure(os.path.join(self.dir, "b"))
    jax.jit(lambda x: x * 5 + 2)(1.0)
    self.assertLen(_entries(first), 1)
    self.assertLen(_entries(second), 1)
    compile_cache.configure("")
    jax.jit(lambda x: x * 7 + 3)(1.0)
    self.assertEqual((len(_entries(first)), len(_entries(second))), (1, 1))


class StudyTest(absltest.TestCase):
  """Studies in fresh processes share one cache: fill it (two at once), then load it with
  two entries damaged."""

  def _start(self, workdir, cache):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    proc = subprocess.Popen(
        [sys.executable, "launch/main.py", "--config=experiments/mnist1d.py:quick",
         f"--workdir={workdir}", f"--config.compile_cache_dir={cache}",
         "--config.methods=baseline", "--config.num_runs=2", "--config.num_train_steps=20",
         "--config.progress=False", "--config.plots=False"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    self.addCleanup(proc.kill)  # A failed or timed-out assertion must not leave it running.
    return workdir, proc

  def _finish(self, started):
    workdir, proc = started
    _, stderr = proc.communicate(timeout=600)
    self.assertEqual(proc.returncode, 0, stderr[-2000:])
    with open(os.path.join(workdir, "results.json"), "rb") as f:
      return f.read(), stderr

  def _study(self, workdir, cache):
    return self._finish(self._start(workdir, cache))

  def test_second_study_loads_every_program_and_damage_is_repaired(self):
    root = _tempdir(self)
    cache = os.path.join(root, "cache")
    # Two studies at once on the empty cache (a sweep run in parallel, two users of one home
    # directory): both compile and write the same entries; neither may fail or differ.
    racing = [self._start(os.path.join(root, w), cache) for w in ("w1", "w1b")]
    (first, _), (other, _) = [self._finish(s) for s in racing]
    self.assertEqual(other, first)
    (tagged,) = os.listdir(cache)
    path = os.path.join(cache, tagged)
    written = _entries(path)
    self.assertGreaterEqual(len(written), 3)  # Every program was written (min time 0).
    sizes = {n: os.path.getsize(os.path.join(path, n)) for n in written}

    # Damage: one entry cut in half (killed mid-write), a byte flipped in another; the rest
    # stay whole, so the next study also shows loading (it used to take a study of its own).
    for name, cut in zip(written[:2], (True, False)):
      with open(os.path.join(path, name), "r+b") as f:
        if cut:
          f.truncate(sizes[name] // 2)
        else:
          f.seek(sizes[name] // 2)
          byte = f.read(1)
          f.seek(sizes[name] // 2)
          f.write(bytes([byte[0] ^ 0xFF]))
    damaged = {n: os.stat(os.path.join(path, n)).st_mtime_ns for n in written}
    second, stderr = self._study(os.path.join(root, "w2"), cache)
    self.assertEqual(second, first)  # Same bits, prediction hashes included.
    self.assertEqual(stderr.count("removed unreadable entry"), 2, stderr[-2000:])
    self.assertNotIn("Error reading persistent compilation cache", stderr)  # Never read.
    self.assertEqual(_entries(path), written)  # A miss on another key would add an entry...
    for name in written[2:]:  # ...and the whole entries were loaded, not written again.
      self.assertEqual(os.stat(os.path.join(path, name)).st_mtime_ns, damaged[name], name)
    # The damaged ones were compiled again and rewritten whole (changed: read again, kept).
    self.assertEqual(compile_cache.repair(path), [])


if __name__ == "__main__":
  absltest.main()
