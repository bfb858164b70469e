"""The timed case shared by the benchmarks: churn_jax's real stacked train step.

Scripts in benchmarks/ import this file from beside them (`import common`).
"""

import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from churn_jax import methods, models
from churn_jax.engine import sharding, step as step_lib

# Input shapes as used by the configs: MNIST-1D vectors, CIFAR-sized images.
INPUT_SHAPES = {"mlp": (40,), "conv1d": (40,), "lenet5": (32, 32, 3),
                "resnet20": (32, 32, 3), "resnet56": (32, 32, 3)}


def build_case(model_name, runs, members, strategy, batch_size, num_devices=1, numerics=None):
  """(train_step, state, batch) for an R x M stack of independent members (a deep ensemble).

  SGD with Nesterov momentum, batch `batch_size` per run, random inputs; the batch is split
  over a mesh of the first `num_devices` devices as the trainer would split it. `numerics`:
  an engine.numerics.Numerics (compute dtype, remat, ...); default float32.
  """
  model = models.get_model(model_name, 10)
  kind = "baseline" if members == 1 else "ensemble"
  method = methods.build(kind, ml_collections.ConfigDict(dict(kind=kind, num_members=members)),
                         1000)
  lr = ml_collections.ConfigDict(dict(base=0.01, warmup_steps=0, decay_steps=()))
  tx = step_lib.make_optimizer(ml_collections.ConfigDict(dict(name="sgd", momentum=0.9)), lr)
  keys = jax.random.split(jax.random.PRNGKey(0), runs * members).reshape(runs, members, -1)
  run_rngs = jax.random.split(jax.random.PRNGKey(1), runs)
  shape = INPUT_SHAPES[model_name]
  mesh = sharding.make_mesh(runs, members, batch_size, jax.devices()[:num_devices], strategy)
  state = step_lib.init_state(model, tx, keys, run_rngs, jnp.zeros((1,) + shape), mesh)
  train_step = step_lib.make_train_step(model, method, tx, strategy, numerics=numerics)
  rng = np.random.default_rng(0)
  rows = runs * method.streams_per_run  # A deep ensemble's members see independent batches.
  batch = jax.device_put(
      (np.asarray(rng.normal(size=(rows, batch_size) + shape), np.float32),
       np.asarray(rng.integers(0, 10, size=(rows, batch_size)), np.int32)),
      sharding.batch_sharding(mesh))
  return train_step, state, batch


def time_steps(train_step, state, batch, steps):
  """(median step seconds over `steps` steps, seconds of the first call incl. compile)."""
  start = time.perf_counter()
  state, _ = train_step(state, batch, {})
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  state, _ = train_step(state, batch, {})  # One more warm-up step.
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, _ = train_step(state, batch, {})  # The state is donated: always take the new one.
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  return statistics.median(times), compile_s
