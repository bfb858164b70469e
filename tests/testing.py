"""Tiny configs and synthetic datasets shared by the tests (kept small: 2 CPU cores)."""

import os
import subprocess
import sys

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
  return config


def run_child(test_file: str) -> subprocess.CompletedProcess:
  """Runs `python test_file child` (a test file's multi-device half) from the repo root.

  Fake CPU devices must be requested before jax is imported, and pytest has imported it, so
  those checks run in a fresh process.
  """
  env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return subprocess.run([sys.executable, test_file, "child"], env=env, capture_output=True,
                        text=True, timeout=600)


def finish(proc, timeout=600) -> str:
  """Waits for a CLI process started with its output in a file (`proc.log_path`); the output."""
  proc.wait(timeout=timeout)
  with open(proc.log_path) as f:
    return f.read()
