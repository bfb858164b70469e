"""train_and_evaluate(config, workdir): the churn study, one method after another.

For each method named in `config.methods`, R independent runs (each with M members) are
trained as one stacked program, every member predicts the test split, the deployed
predictions of the runs are compared pairwise, and the results files are rewritten.
"""

import contextlib
import dataclasses
import functools
import os
import time
from typing import Any, Dict, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from churn_jax import data as data_lib, methods, models
from churn_jax.configs import config_lib
from churn_jax.engine import sharding, stack, step as step_lib
from churn_jax.engine import throughput
from churn_jax.methods import perturb
from churn_jax.outputs import observer as observer_lib, predictions
from churn_jax.runtime import (checkpoint, compile_cache, distributed, host_devices, preemption,
                               workdir_lock)
from churn_jax.study import evaluate, regenerate, results_store, settings, validate
# The per-run and per-member random streams, re-exported: callers know them as train.*.
from churn_jax.study.seeds import data_seeds, member_keys, run_keys  # pylint: disable=unused-import


@dataclasses.dataclass
class MethodRun:
  """What training one method produced."""
  method: methods.Method
  member_probs: np.ndarray   # (R, M, N, K) test probabilities of every member
  labels: np.ndarray         # (N,) test labels in the same order
  state: step_lib.TrainState
  train_seconds: float
  input_seconds: float       # of train_seconds, spent waiting for input batches
  final_losses: np.ndarray   # (R,)
  throughput: dict = dataclasses.field(default_factory=dict)  # engine/throughput.py Meter


def _setup(config, dataset, method: methods.Method, run_ids, tx, mesh):
  """The model, strategy, optimizer, mesh and freshly initialised stacked state of a method."""
  run_ids = list(range(config.num_runs) if run_ids is None else run_ids)
  num_members = method.num_members
  model_cfg = dict(config.model)
  model_name = model_cfg.pop("name")
  if method.student_model is not None:  # The method trains its own architecture (BE student).
    model_name, model_cfg = method.student_model(model_name, model_cfg)
  model = models.get_model(model_name, dataset.num_classes, **model_cfg)
  strategy = stack.resolve_strategy(config.get("strategy", "auto"),
                                    models.uses_convolutions(model_name))
  tx = tx or step_lib.make_optimizer(config.optimizer, config.lr)
  if mesh is None:
    mesh = sharding.make_mesh(len(run_ids), num_members, config.batch_size, strategy=strategy,
                              spec=sharding.parse_mesh(config.get("mesh", "")))
  vary = config_lib.vary_set(config)

  keys = member_keys(config.seed, run_ids, num_members, "init" in vary, method.init_salt)
  run_rngs = run_keys(config.seed, run_ids, "data" in vary)
  sample_x = jnp.zeros((1,) + dataset.input_shape, jnp.float32)
  state = step_lib.init_state(model, tx, keys, run_rngs, sample_x, mesh,
                              keep_stale=method.stale_refresh_steps > 0)
  return run_ids, model, strategy, tx, mesh, state


def train_method(config, dataset: data_lib.Dataset, method: methods.Method,
                 run_ids: Optional[Sequence[int]] = None, tx=None, mesh=None,
                 checkpointer: Optional[checkpoint.MethodCheckpointer] = None,
                 teacher: Optional[step_lib.TrainState] = None,
                 observer: Optional[observer_lib.MethodObserver] = None, coefficients=None,
                 stop_on_nonfinite: bool = True) -> MethodRun:
  """Trains `method` for the runs `run_ids` (default: all config.num_runs) as one stack.

  With a checkpointer, training resumes from its latest readable checkpoint and saves
  periodically; the result is bitwise the same as an uninterrupted run on CPU. `teacher` is
  the trained state of the method's stage-1 teacher (same runs), for two-stage methods.
  `observer` receives the step metrics at log steps and, with config.eval_every_steps > 0, the
  members' test probabilities every that many steps (churn_jax/outputs/observer.py).
  `coefficients` (a pytree of (R,) arrays) reaches the loss as extra["coefficients"] (a
  stacked sweep, churn_jax/study/sweeps.py); with `stop_on_nonfinite` False a diverged run does not
  stop the others (the caller reads state.first_nonfinite).
  """
  if method.teacher is not None and teacher is None:
    raise ValueError(f"method {method.name!r} needs its teacher {method.teacher!r} trained first")
  run_ids, model, strategy, tx, mesh, state = _setup(config, dataset, method, run_ids, tx, mesh)
  vary = config_lib.vary_set(config)
  num_steps = int(config.num_train_steps)
  start_step = 0
  if checkpointer is not None:
    restored, start_step = checkpointer.restore_latest(state)
    if restored is not None:
      state = restored
      logging.info("method %s: resumed from step %d", method.name, start_step)
  x_range = perturb.input_range(dataset)  # Pixel units of ODS / Gaussian perturbations.
  teacher_model = models.get_model(config.model.name, dataset.num_classes, **{
      k: v for k, v in config.model.items() if k != "name"})  # The study's model.
  numerics = settings.numerics_of(config)
  make_step = functools.partial(step_lib.make_train_step, model, method, tx, strategy, x_range,
                                teacher_model, numerics=numerics)
  train_step = make_step()
  block = numerics.steps_per_loop  # k steps per dispatch (lax.scan), events at block ends.
  block_step = make_step(steps=block) if block > 1 else None
  teacher_vars = step_lib.variables_of(teacher) if teacher is not None else {}
  batch_sharding = sharding.batch_sharding(mesh)
  # Each process feeds only the (run, row) block its devices hold (derived from the sharding).
  # With independent member data there is one stream per (run, member), run-major.
  streams = len(run_ids) * method.streams_per_run
  batches = distributed.host_batches(dataset, config.batch_size,
                                     data_seeds(config.seed, run_ids, "data" in vary,
                                                method.streams_per_run),
                                     start_step, num_steps - start_step, batch_sharding)

  log_every = max(1, int(config.get("log_every_steps", 100)))
  eval_every = int(config.get("eval_every_steps", 0) or 0)
  eval_batch = config.get("eval_batch_size", 1000)
  predict_fn = step_lib.make_predict(model, strategy, numerics)
  logging.info("method %s: %d runs x %d members, %s strategy, %s, %d steps per dispatch, "
               "steps %d..%d", method.name, len(run_ids), method.num_members, strategy,
               numerics.compute_dtype, block, start_step, num_steps)
  meter = throughput.Meter(streams * config.batch_size,
                           peak=throughput.device_peak(mesh.devices.flat, numerics.compute_dtype))
  profile = settings.trace_window(config)
  start = time.perf_counter()
  bar = tqdm.tqdm(total=num_steps, initial=start_step, desc=method.name, unit="step",
                  disable=not config.get("progress", True), leave=True)
  losses = np.full(len(run_ids), np.nan)
  input_seconds = 0.0  # Time the loop waited for its next batch (benchmarks/input_pipeline.py).
  # A thread gathers, transfers and shards the next batches while the step runs.
  batch_iter = distributed.prefetch_to_device(batches, batch_sharding,
                                              (streams, config.batch_size))
  stack_block = _block_stacker(batch_sharding)
  watcher = preemption.current()  # SIGTERM/SIGINT: stop at a step boundary, checkpointed.
  every_ckpt = checkpointer.every_steps if checkpointer is not None else 0
  step, tracing = start_step, False
  try:
    while step < num_steps:
      # Every step (or block of steps_per_loop): agreed by all hosts (runtime/preemption.py).
      if watcher.should_stop(step):
        _stop(state, method.name, run_ids, checkpointer, step, start_step, watcher.signum)
      n = block if block > 1 and step + block <= num_steps else 1
      wait_start = time.perf_counter()
      chunk = [next(batch_iter) for _ in range(n)]
      input_seconds += time.perf_counter() - wait_start
      if profile is not None and not tracing and profile[0] <= step + n and step < profile[1]:
        jax.profiler.start_trace(os.path.join(observer.workdir if observer else ".", "profile"))
        tracing = True
      if n > 1:
        state, step_metrics = block_step(state, stack_block(chunk), teacher_vars, coefficients)
      else:
        state, step_metrics = train_step(state, chunk[0], teacher_vars, coefficients)
      if meter.first is None:  # Once: FLOPs of the step, and a mark after its compilation.
        fn, args = (block_step, (stack_block(chunk),)) if n > 1 else (train_step, (chunk[0],))
        flops = throughput.step_flops(fn, state, *args, teacher_vars, coefficients)
        meter.flops_per_step = flops / n if flops else None
        jax.block_until_ready(state)
        meter.mark(step + n)
      prev, step = step, step + n
      crossed = lambda every: every > 0 and step // every > prev // every
      if tracing and step >= profile[1]:
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        tracing = False
      save = checkpointer is not None and (step == num_steps or crossed(every_ckpt))
      if save or crossed(log_every) or step == num_steps:
        losses = distributed.to_host(step_metrics["loss"])  # Waits for the step: a sync.
        meter.mark(step)
        perf = meter.summary()
        if stop_on_nonfinite:
          _check_finite(state, method.name, run_ids, checkpointer)  # Before saving.
        bar.set_postfix(loss=f"{losses.mean():.4f}", **_bar_perf(perf))
        bar.update(step - bar.n)
        if observer is not None:
          observer.on_log(step, distributed.to_host(step_metrics))  # A collective.
          observer.on_throughput(step, perf)
      if observer is not None and crossed(eval_every) and step < num_steps:
        observer.on_eval(step, *predict(model, state, dataset, strategy, eval_batch, predict_fn))
      if save:
        checkpointer.save(step, state)
  finally:
    if tracing:
      jax.profiler.stop_trace()
    batch_iter.close()
    bar.close()
    if checkpointer is not None:
      checkpointer.wait()
  jax.block_until_ready(state)
  train_seconds = time.perf_counter() - start
  probs, labels = predict(model, state, dataset, strategy, eval_batch, predict_fn)
  if observer is not None and eval_every:
    observer.on_eval(num_steps, probs, labels)
  return MethodRun(method=method, member_probs=probs, labels=labels, state=state,
                   train_seconds=train_seconds, input_seconds=input_seconds,
                   final_losses=losses, throughput=meter.summary())


def _bar_perf(perf: dict) -> dict:
  """The progress bar's throughput fields."""
  out = {}
  if "examples_per_second" in perf:
    out["ex/s"] = f"{perf['examples_per_second']:.3g}"
  if "mfu" in perf:
    out["mfu"] = f"{100 * perf['mfu']:.1f}%"
  elif "achieved_flops_per_second" in perf:
    out["flop/s"] = f"{perf['achieved_flops_per_second']:.3g}"
  return out


@functools.lru_cache(maxsize=8)
def _block_stacker(batch_sharding):
  """Jitted: k device batches -> one block (k, ...) laid out as (None, *batch_sharding)."""
  spec = jax.sharding.PartitionSpec(None, *batch_sharding.spec)
  out = jax.sharding.NamedSharding(batch_sharding.mesh, spec)
  return jax.jit(lambda chunk: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *chunk),
                 out_shardings=out)


def _check_finite(state: step_lib.TrainState, method: str, run_ids: Sequence[int],
                  checkpointer: Optional[checkpoint.MethodCheckpointer] = None):
  first = distributed.to_host(state.first_nonfinite)  # Gathered from every process.
  if (first >= 0).any():
    r, m = np.argwhere(first >= 0)[np.argmin(first[first >= 0])]
    kept = checkpointer.latest_step() if checkpointer is not None else None
    raise FloatingPointError(
        f"method {method!r}: non-finite parameters in run {run_ids[r]} member {m} at step "
        f"{first[r, m]}; " + (f"the last good checkpoint (step {kept}) is kept" if kept
                              else "no checkpoint had been written"))


def _stop(state, method: str, run_ids, checkpointer, step: int, start_step: int, signum):
  """Checkpoints the finished `step` (unless just resumed from it) and raises Stopped."""
  if step > start_step and checkpointer is not None:
    _check_finite(state, method, run_ids, checkpointer)
    if checkpointer.latest_step() != step:
      checkpointer.save(step, state)
    checkpointer.wait()
  raise preemption.Stopped(method, step, signum, saved=checkpointer is not None and step > 0)


def predict(model, state, dataset, strategy: str, batch_size: int, predict_fn=None):
  """Probabilities (R, M, N, K) of every member on the test split, and its labels (N,)."""
  predict_fn = predict_fn or step_lib.make_predict(model, strategy)  # Reuse: one compile.
  mesh = state.step.sharding.mesh if hasattr(state.step.sharding, "mesh") else None
  probs, labels = [], []
  for x, y in dataset.test_batches(batch_size):
    x = np.asarray(x)
    if mesh is not None:  # Each 'data' device evaluates its slice of the batch.
      x = jax.make_array_from_callback(x.shape, sharding.eval_sharding(mesh, x.shape[0]),
                                       lambda index, x=x: x[index])
    probs.append(distributed.to_host(predict_fn(state, x)))
    labels.append(np.asarray(y))
  return np.concatenate(probs, axis=2), np.concatenate(labels)


def method_names(config) -> list:
  return [n.strip() for n in str(config.methods).split(",") if n.strip()]


def study_order(config, names: Sequence[str]) -> list:
  """The selected methods with each two-stage method's teacher placed before it."""
  order = []
  for name in names:
    teacher = config.method_configs[name].get("teacher")
    if teacher and teacher not in order:
      order.append(teacher)
    if name not in order:
      order.append(name)
  return order


def _restore_teacher(config, dataset, method, store, tx) -> step_lib.TrainState:
  """The final state of a teacher that finished in an earlier process, from its checkpoint."""
  *_, target = _setup(config, dataset, method, None, tx, None)
  ckpt = checkpoint.MethodCheckpointer(store.checkpoint_dir(method.name), 0)
  try:
    state, step = ckpt.restore_latest(target)
    if step != int(config.num_train_steps):  # Final checkpoint rejected: train on, same bits.
      logging.warning("teacher %s: no good final checkpoint; training on from step %d",
                      method.name, step)
      state = train_method(config, dataset, method, tx=tx, checkpointer=ckpt).state
  finally:
    ckpt.close()
  return state


def train_and_evaluate(config, workdir: str) -> Dict[str, Any]:
  """Runs the churn study of `config` and writes results.{json,csv,md} into `workdir`.

  Finished methods found in workdir are reused and unfinished ones resume from their
  checkpoints (resume order: churn_jax/runtime/checkpoint.py). A two-stage method's teacher is trained
  first and reported in its own row. Timings go to timings.json so that results.json is
  bitwise reproducible. The workdir is locked for the whole study (churn_jax/runtime/workdir_lock.py)
  and SIGTERM/SIGINT stop it at a step boundary with a checkpoint (churn_jax/runtime/preemption.py).
  """
  with contextlib.ExitStack() as held:  # The workdir lock and the signal handlers.
    return _train_and_evaluate(config, workdir, held)


def _train_and_evaluate(config, workdir: str, held: contextlib.ExitStack) -> Dict[str, Any]:
  workdir_lock.check_workdir(workdir)  # Empty, a file, read-only: one line, nothing written.
  # First: the CPU device count is fixed when JAX initialises, which validation triggers.
  host_devices.configure(settings.cpu_device_count(config))
  validate.validate_config(config)
  # Before the first compilation; a valid config only (nothing written for a bad one).
  compile_cache.configure(config.get("compile_cache_dir", ""), workdir)  # Shared by hosts.
  dataset = data_lib.get_dataset(config.data)
  validate.validate_with_dataset(config, dataset)
  order = study_order(config, method_names(config))
  store = results_store.ResultsStore(workdir, config, order,  # Fails before any write.
                                     data=data_lib.provenance(dataset))
  held.enter_context(workdir_lock.hold(workdir))
  held.enter_context(preemption.watch())
  store.begin()  # Under the lock: re-read results.json, write config.json.
  logging.info("dataset %s: %d train, %d test, %d classes", dataset.name, dataset.num_train,
               dataset.num_test, dataset.num_classes)
  num_steps = int(config.num_train_steps)
  built = {name: methods.build(name, config.method_configs[name], num_steps) for name in order}
  teachers = {m.teacher for m in built.values() if m.teacher}
  tx = step_lib.make_optimizer(config.optimizer, config.lr)
  states = {}  # Trained teachers, kept in memory for their students.
  for name in order:
    method = built[name]
    if store.is_finished(name):
      predictions.check(workdir, name, store.results["methods"][name].get("predictions"))
      logging.info("method %s: finished earlier, results reused", name)
      continue
    teacher = None
    if method.teacher:
      teacher = states.get(method.teacher) or _restore_teacher(
          config, dataset, built[method.teacher], store, tx)
    ckpt = checkpoint.MethodCheckpointer(store.checkpoint_dir(name),
                                         config.get("checkpoint_every_steps", 0),
                                         config.get("checkpoints_to_keep", 2))
    observer = settings.method_observer(workdir, config, method)
    try:
      out = train_method(config, dataset, method, tx=tx, checkpointer=ckpt, teacher=teacher,
                         observer=observer)
    except BaseException:
      observer.close()
      raise
    finally:
      ckpt.close()
    if name in teachers:
      states[name] = out.state
    deployed = np.asarray(method.deployed_probs(out.member_probs))
    entry = evaluate.summarize(deployed, out.labels, config.get("schurn_alpha", 1.0))
    teacher_cost = built[method.teacher].training_cost if method.teacher else 0.0
    entry.update(num_members=method.num_members, prediction=method.prediction,
                 training_cost=method.training_cost + teacher_cost,
                 inference_cost=method.inference_cost)
    if jax.process_index() == 0:
      entry["predictions"] = predictions.save(workdir, name, deployed, out.member_probs,
                                              out.labels, range(config.num_runs),
                                              method.prediction)
    observer.on_results(num_steps, entry)
    store.add(name, entry, train_seconds=out.train_seconds, input_seconds=out.input_seconds,
              throughput=out.throughput)
    logging.info("%s: accuracy %.2f%%, churn %.2f%%", name, 100 * entry["accuracy"]["mean"],
                 100 * entry["churn"]["mean"])
  if jax.process_index() == 0:
    regenerate.write_differences(workdir, store.results)
    if config.get("plots", True):  # Off: `churn-jax report WORKDIR` can draw them later.
      regenerate.write_plots(workdir, store.results)
  return store.results
