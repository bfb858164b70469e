"""train_and_evaluate(config, workdir): the churn study, one method after another.

For each method named in `config.methods`, R independent runs (each with M members) are
trained as one stacked program, every member predicts the test split, the deployed
predictions of the runs are compared pairwise, and the results files are rewritten.
"""

import dataclasses
import time
from typing import Any, Dict, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from churn_jax import data as data_lib
from churn_jax import evaluate, methods, models, report, sharding, stack, step as step_lib


@dataclasses.dataclass
class MethodRun:
  """What training one method produced."""
  method: methods.Method
  member_probs: np.ndarray   # (R, M, N, K) test probabilities of every member
  labels: np.ndarray         # (N,) test labels in the same order
  state: step_lib.TrainState
  train_seconds: float
  final_losses: np.ndarray   # (R,)


def vary_set(config) -> set:
  vary = {v.strip() for v in str(config.get("vary", "init,data")).split(",") if v.strip()}
  unknown = vary - {"init", "data"}
  if unknown:
    raise ValueError(f"config.vary: unknown source(s) {sorted(unknown)}; known: init, data")
  return vary


def member_keys(seed: int, run_ids: Sequence[int], num_members: int, vary_init: bool):
  """PRNG keys (R, M, 2): run r member m gets fold_in(fold_in(seed, r), m).

  Keys depend on the run id, not on its position in the stack, so a run trained alone
  starts exactly like the same run trained in a stack.
  """
  base = jax.random.PRNGKey(seed)
  return jnp.stack([
      jnp.stack([jax.random.fold_in(jax.random.fold_in(base, r if vary_init else 0), m)
                 for m in range(num_members)]) for r in run_ids])


def data_seeds(seed: int, run_ids: Sequence[int], vary_data: bool):
  return [int(np.random.SeedSequence([seed, r if vary_data else 0]).generate_state(1)[0])
          for r in run_ids]


def train_method(config, dataset: data_lib.Dataset, method: methods.Method,
                 run_ids: Optional[Sequence[int]] = None, tx=None,
                 mesh=None, desc: Optional[str] = None) -> MethodRun:
  """Trains `method` for the runs `run_ids` (default: all config.num_runs) as one stack."""
  run_ids = list(range(config.num_runs) if run_ids is None else run_ids)
  num_members = method.num_members
  model_cfg = dict(config.model)
  model_name = model_cfg.pop("name")
  model = models.get_model(model_name, dataset.num_classes, **model_cfg)
  strategy = stack.resolve_strategy(config.get("strategy", "auto"),
                                    models.uses_convolutions(model_name))
  tx = tx or step_lib.make_optimizer(config.optimizer, config.lr)
  if mesh is None:
    mesh = sharding.make_mesh(len(run_ids), num_members, config.batch_size)
  vary = vary_set(config)

  keys = member_keys(config.seed, run_ids, num_members, "init" in vary)
  run_rngs = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), r)
                        for r in run_ids])
  num_steps = int(config.num_train_steps)
  sample_x = jnp.zeros((1,) + dataset.input_shape, jnp.float32)
  state = step_lib.init_state(model, tx, keys, run_rngs, sample_x, mesh)
  train_step = step_lib.make_train_step(model, method, tx, strategy)
  batches = dataset.train_batches(config.batch_size,
                                  data_seeds(config.seed, run_ids, "data" in vary), 0, num_steps)
  batch_sharding = sharding.batch_sharding(mesh)

  log_every = max(1, int(config.get("log_every_steps", 100)))
  logging.info("method %s: %d runs x %d members, %s strategy, %d steps", method.name,
               len(run_ids), num_members, strategy, num_steps)
  start = time.perf_counter()
  bar = tqdm.tqdm(total=num_steps, desc=desc or method.name, unit="step",
                  disable=not config.get("progress", True), leave=True)
  step_metrics = None
  for i, batch in enumerate(data_lib.prefetch(batches)):
    batch = jax.device_put(batch, batch_sharding)
    state, step_metrics = train_step(state, batch)
    if (i + 1) % log_every == 0 or i + 1 == num_steps:
      losses = np.asarray(step_metrics["loss"])
      _check_finite(losses, method.name, run_ids, i + 1)
      bar.set_postfix(loss=f"{losses.mean():.4f}")
      bar.update(i + 1 - bar.n)
  bar.close()
  jax.block_until_ready(state)
  train_seconds = time.perf_counter() - start
  probs, labels = predict(model, state, dataset, strategy, config.get("eval_batch_size", 1000))
  return MethodRun(method=method, member_probs=probs, labels=labels, state=state,
                   train_seconds=train_seconds, final_losses=np.asarray(step_metrics["loss"]))


def _check_finite(losses: np.ndarray, method: str, run_ids, step: int):
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    raise FloatingPointError(f"method {method!r}: non-finite loss in run {run_ids[bad[0]]} "
                             f"at step {step}")


def predict(model, state, dataset, strategy: str, batch_size: int):
  """Probabilities (R, M, N, K) of every member on the test split, and its labels (N,)."""
  predict_fn = step_lib.make_predict(model, strategy)
  probs, labels = [], []
  for x, y in dataset.test_batches(batch_size):
    probs.append(np.asarray(predict_fn(state, jnp.asarray(x))))
    labels.append(np.asarray(y))
  return np.concatenate(probs, axis=2), np.concatenate(labels)


def method_names(config) -> list:
  names = [n.strip() for n in str(config.methods).split(",") if n.strip()]
  if not names:
    raise ValueError("config.methods is empty; name at least one method")
  unknown = [n for n in names if n not in config.method_configs]
  if unknown:
    raise ValueError(f"config.methods: unknown method(s) {unknown}; configured: "
                     f"{', '.join(sorted(config.method_configs))}")
  return names


def train_and_evaluate(config, workdir: str) -> Dict[str, Any]:
  """Runs the churn study of `config` and writes results.{json,csv,md} into `workdir`."""
  names = method_names(config)
  if config.num_runs < 2:
    raise ValueError(f"config.num_runs must be >= 2 (churn compares pairs of runs), "
                     f"got {config.num_runs}")
  dataset = data_lib.get_dataset(config.data)
  logging.info("dataset %s: %d train, %d test, %d classes", dataset.name, dataset.num_train,
               dataset.num_test, dataset.num_classes)
  tx = step_lib.make_optimizer(config.optimizer, config.lr)
  results = {"config": config.to_dict(), "dataset": dataset.name, "methods": {}}
  for name in names:
    method = methods.build(name, config.method_configs[name], int(config.num_train_steps))
    out = train_method(config, dataset, method, tx=tx)
    deployed = np.asarray(method.deployed_probs(out.member_probs))
    entry = evaluate.summarize(deployed, out.labels, config.get("schurn_alpha", 1.0))
    entry.update(num_members=method.num_members, prediction=method.prediction,
                 training_cost=method.training_cost, inference_cost=method.inference_cost,
                 train_seconds=out.train_seconds)
    results["methods"][name] = entry
    report.write_results(workdir, results)
    logging.info("%s: accuracy %.2f%%, churn %.2f%%", name, 100 * entry["accuracy"]["mean"],
                 100 * entry["churn"]["mean"])
  return results
