"""Tiny configs and synthetic datasets shared by the tests (kept small: 2 CPU cores)."""

import atexit
import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Callable

import ml_collections
import numpy as np

from churn_jax.configs import config_lib
from churn_jax.data import Dataset


def tiny_dataset(num_train=64, num_test=32, dim=12, num_classes=4, seed=0, image=False):
  """Linearly separable-ish Gaussian blobs; images are (4, 4, 1) for conv nets."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(num_classes, dim)) * 2
  def split(n):
    y = rng.integers(0, num_classes, size=n).astype(np.int32)
    x = (centers[y] + rng.normal(size=(n, dim))).astype(np.float32)
    return (x.reshape(n, 4, dim // 4, 1) if image else x), y
  x_train, y_train = split(num_train)
  x_test, y_test = split(num_test)
  return Dataset(name="tiny", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                 num_classes=num_classes)


def tiny_config(num_runs=3, num_steps=6, batch_size=8, model=None, methods="baseline,codistill"):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_runs = num_runs
  config.vary = "init,data"
  config.data = ml_collections.ConfigDict(dict(name="mnist1d", npz_path="", cache_dir="",
                                               num_samples=1000, train_split=0.8, seed=42))
  config.model = ml_collections.ConfigDict(model or dict(name="mlp", hidden=(16,)))
  config.optimizer = ml_collections.ConfigDict(dict(name="sgd", momentum=0.9, nesterov=True,
                                                    weight_decay=1e-4))
  config.lr = ml_collections.ConfigDict(dict(base=0.1, warmup_steps=2, decay_steps=(4,),
                                             decay_factor=0.1))
  config.batch_size = batch_size
  config.num_train_steps = num_steps
  config.methods = methods
  config.method_configs = config_lib.method_configs(0.2, 0.05, 1.0, 0.5)
  config.schurn_alpha = 1.0
  config.eval_batch_size = 16
  config.strategy = "auto"
  config.log_every_steps = 2
  config.progress = False
  config.checkpoint_every_steps = 0
  config.checkpoints_to_keep = 2
  config.compile_cache_dir = "auto"
  # No test of a tiny study looks at plots/ (~1-2 CPU-s a study); those that do switch it on.
  config.plots = False
  return config


def load_file(relpath: str, name: str = ""):
  """The module in the repository's file `relpath` (a launch script, an experiment config),
  imported under `name` (default: the file's name)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  name = name or os.path.basename(relpath)[:-len(".py")]
  spec = importlib.util.spec_from_file_location(name, os.path.join(root, relpath))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_child(test_file: str, env=None) -> subprocess.CompletedProcess:
  """Runs `python test_file child` (a test file's multi-device half) from the repo root.

  Fake CPU devices must be requested before jax is imported, and pytest has imported it, so
  those checks run in a fresh process. `env`: variables to set (None: to remove).
  """
  env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
             **(env or {}))
  env = {k: v for k, v in env.items() if v is not None}
  return subprocess.run([sys.executable, test_file, "child"], env=env, capture_output=True,
                        text=True, timeout=600)


def assert_child_passes(test, test_file: str, env=None) -> None:
  """run_child(test_file, env) passed (absltest also fails a child that found no test)."""
  proc = run_child(test_file, env)
  test.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
  test.assertIn("OK", proc.stderr)


def finish(proc, timeout=600) -> str:
  """Waits for a CLI process started with its output in a file (`proc.log_path`); the output."""
  proc.wait(timeout=timeout)
  with open(proc.log_path) as f:
    return f.read()


def _sources_hash() -> str:
  """sha256 of the churn_jax sources and this file: a cached result is only reused unchanged."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  digest = hashlib.sha256()
  for base in ("churn_jax", "experiments"):
    for folder, dirs, files in sorted(os.walk(os.path.join(root, base))):
      dirs.sort()
      for name in sorted(files):
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          digest.update(os.path.relpath(path, root).encode())
          with open(path, "rb") as f:
            digest.update(f.read())
  with open(os.path.abspath(__file__), "rb") as f:
    digest.update(f.read())
  return digest.hexdigest()


def _shared_root() -> str:
  """$CHURN_JAX_TEST_SHARED; a folder of this process's own when run without pytest."""
  if "CHURN_JAX_TEST_SHARED" not in os.environ:  # `python tests/.../x_test.py`.
    os.environ["CHURN_JAX_TEST_SHARED"] = tempfile.mkdtemp(prefix="churn_jax_tests_shared_")
    atexit.register(shutil.rmtree, os.environ["CHURN_JAX_TEST_SHARED"], True)
  return os.environ["CHURN_JAX_TEST_SHARED"]


def shared_dir(name: str, config, build: Callable[[str], None]) -> str:
  """A folder built once per test run by `build(folder)`, shared by every pytest worker.

  Keyed by `name`, the config and the sources (a change to either builds anew). Under xdist a
  session fixture is per worker, so the folder lives under $CHURN_JAX_TEST_SHARED (made by
  tests/conftest.py before the workers start) and a file lock lets one worker build it while
  the others wait. Treat it as read-only: copy it (shutil.copytree) before writing into it.
  """
  root = _shared_root()
  key = hashlib.sha256((name + config.to_json_best_effort(sort_keys=True) +
                        _sources_hash()).encode()).hexdigest()[:16]
  path = os.path.join(root, f"{name}-{key}")
  with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
    if not os.path.isdir(path):
      partial = path + ".partial"
      shutil.rmtree(partial, ignore_errors=True)  # A build that failed earlier.
      build(partial)
      os.rename(partial, path)  # Complete or absent, never half-built.
  return path


def study_config():
  """The shared finished study: a baseline, a co-distillation deploying member 0 and an
  ensemble deploying the mean, with learning curves."""
  config = tiny_config(num_runs=3, num_steps=4, methods="baseline,codistill,ensemble2")
  config.method_configs.ensemble2 = dict(kind="ensemble", num_members=2)
  config.schurn_alpha = 2.0  # Not the default, so a dropped alpha shows.
  config.eval_every_steps = 2
  config.plots = True  # tests/outputs/recompute_test.py reads its plots/.
  return config


def finished_study(workdir: str):
  """Copies the shared finished study (study_config(), trained once per test run) into
  `workdir`; returns its config."""
  config = study_config()
  # The data cache is shared too (written by the one build, under its lock); the config
  # handed back is the one the study ran with, so a rerun on the copy reuses its results.
  config.data.cache_dir = os.path.join(_shared_root(), "mnist1d")
  def build(path):
    from churn_jax.study import train  # pylint: disable=g-import-not-at-top
    train.train_and_evaluate(config.copy_and_resolve_references(), os.path.join(path, "wd"))
  shutil.copytree(os.path.join(shared_dir("study", config, build), "wd"), workdir)
  return config


def child_xla_flags() -> str:
  """This run's XLA_FLAGS (tests/conftest.py's compile options) for a study process, without a
  device count: that would fix the count before the study's host_devices.configure."""
  return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                  if not f.startswith("--xla_force_host_platform_device_count"))
