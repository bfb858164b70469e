"""Coefficient sweeps inside the stack: S points x R replicate runs train as one program.

A sweep names one method, one dotted key inside its config ("beta", "beta.value") and S
values. The stack then holds S x R runs: run s*R + r is replicate r of point s. The
coefficient is an array indexed by run that reaches the loss through extra["coefficients"]
(train_step's `coefficients` argument), never a Python constant, so the S points share one
compilation, one input pipeline and one Python loop.

How a point keeps its identity:
  - replicate r of every point has run id r, so its init keys, data order and dropout keys
    are those of run r of a study of that point alone (train.member_keys, data_seeds);
  - the method's loss is built inside the run-vmapped loss from the point's config with the
    traced value substituted at the key (methods.build under vmap). This needs builders that
    do no Python control flow on the coefficient (schedules.from_config accepts traced
    values); `check_traceable` fails in one line before anything trains when one does;
  - churn is computed only between the R runs of one point, and each point is its own
    results entry, "codistill@beta=0.5", with the fingerprint of the point's own config.

Two-stage sweeps (Bhojanapalli et al. App. A: the regularised co-distillation uses "only the
best beta value from the earlier experiments"): a sweep may take fixed coefficients from the
selected point of an earlier sweep (`Sweep.fixed_from`, key -> source method). train_staged
trains the sweeps stage by stage in one workdir; before a later stage it selects the source's
point (lowest mean churn on the validation split when one is held out, else on test, as the
protocol tables select), writes its value into the method config (so into every point's
fingerprint) and records the selection in each point's entry ("sweep" -> "fixed").
"""

import contextlib
import copy
import dataclasses
import hashlib
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from churn_jax import data as data_lib, methods, models
from churn_jax.data import dataset as dataset_lib
from churn_jax.engine import sharding, stack, step as step_lib
from churn_jax.outputs import predictions
from churn_jax.runtime import checkpoint, distributed, host_devices, preemption, workdir_lock
from churn_jax.study import evaluate, results_store, settings, train, validate


@dataclasses.dataclass(frozen=True)
class Sweep:
  """S values of one coefficient (dotted `key` inside method_configs[method])."""
  method: str
  key: str
  values: Tuple[float, ...]
  # ((key in this method's config, source sweep method), ...): set to the source's selected
  # point before this sweep trains (train_staged).
  fixed_from: Tuple[Tuple[str, str], ...] = ()
  # What train_staged set: ((key, value, source, selected point, selection split), ...).
  fixed: Tuple[Tuple[str, float, str, str, str], ...] = ()

  @property
  def points(self) -> List[str]:
    return [point_name(self.method, self.key, v) for v in self.values]


def point_name(method: str, key: str, value: float) -> str:
  """The results entry of one point: 'codistill@beta=0.5' (a trailing '.value' is dropped)."""
  return f"{method}@{key.removesuffix('.value')}={float(value):g}"


FROM_SELECTED = "from_selected"  # The get_sweep() entry key of a later stage's fixed keys.


def parse_sweeps(spec: str) -> List[Sweep]:
  """'codistill:beta.value=0.5,1,2;entropy:beta=0.1,0.2' -> [Sweep, Sweep].

  A later stage names its fixed keys after a second colon:
  'codistill_entropy:entropy_beta.value=0.1,0.2:beta.value<codistill' (beta.value set to the
  selected point of the codistill sweep).
  """
  sweeps = []
  for part in filter(None, (p.strip() for p in (spec or "").split(";"))):
    method, _, rest = part.partition(":")
    rest, _, fixed_spec = rest.partition(":")
    key, _, values = rest.partition("=")
    fixed = []
    for item in filter(None, (f.strip() for f in fixed_spec.split("+"))):
      fixed_key, sep, source = item.partition("<")
      if not sep or not fixed_key.strip() or not source.strip():
        raise ValueError(f"bad sweep {part!r}; a fixed key reads key<source_method")
      fixed.append((fixed_key.strip(), source.strip()))
    try:
      vals = tuple(float(v) for v in values.split(",") if v.strip())
    except ValueError:
      vals = ()
    if not method.strip() or not key.strip() or not vals:
      raise ValueError(f"bad sweep {part!r}; expected method:key=v1,v2,...")
    sweeps.append(Sweep(method.strip(), key.strip(), vals, tuple(fixed)))
  return sweeps


def from_overrides(entries: Sequence[Dict[str, Any]]) -> Tuple[List[str], List[Sweep]]:
  """Groups the override entries of an experiment's get_sweep() into stacked sweeps.

  Each entry names one method and sets at most one key of its config
  ({"methods": "skl", "method_configs.skl.beta": 0.01}); an entry with no key is a plain
  method (the baseline). Returns (plain methods, sweeps) in first-seen order.
  """
  plain, grouped, fixed = [], {}, {}
  for entry in entries:
    method = str(entry.get("methods", ""))
    keys = [k for k in entry if k not in ("methods", FROM_SELECTED)]
    prefix = f"method_configs.{method}."
    if "," in method or not method or len(keys) > 1 or any(
        not k.startswith(prefix) for k in keys):
      raise ValueError(f"sweep entry {entry} is not one method with one coefficient; run it "
                       f"with --mode=sequential")
    if not keys:
      if method not in plain:
        plain.append(method)
      continue
    key = keys[0][len(prefix):]
    grouped.setdefault((method, key), []).append(float(entry[keys[0]]))
    fixed_from = tuple(sorted(dict(entry.get(FROM_SELECTED) or {}).items()))
    if fixed.setdefault((method, key), fixed_from) != fixed_from:
      raise ValueError(f"sweep {method}:{key}: its entries name different {FROM_SELECTED}")
  return plain, [Sweep(m, k, tuple(v), fixed[(m, k)]) for (m, k), v in grouped.items()]


def _set_dotted(tree: dict, key: str, value) -> dict:
  node = tree
  parts = key.split(".")
  for part in parts[:-1]:
    if not isinstance(node.get(part), dict):
      raise KeyError(key)
    node = node[part]
  if parts[-1] not in node or isinstance(node[parts[-1]], dict):
    raise KeyError(key)
  node[parts[-1]] = value
  return tree


def point_config(method_cfg, key: str, value) -> ml_collections.ConfigDict:
  """A copy of a method config with `value` at dotted `key` (a number, or a tracer)."""
  tree = copy.deepcopy(method_cfg.to_dict())
  try:
    _set_dotted(tree, key, value)
  except KeyError:
    raise ValueError(f"sweep key {key!r} is not a coefficient of this method config") from None
  return ml_collections.ConfigDict(tree)


def expand_config(config, sweeps: Sequence[Sweep], plain: Sequence[str] = ()):
  """The study config: `plain` methods plus one method entry per sweep point."""
  out = config.copy_and_resolve_references()
  configs = ml_collections.ConfigDict(out.method_configs.to_dict(), allow_dotted_keys=True)
  names = list(plain)
  for sweep in sweeps:
    if sweep.method not in configs:
      raise ValueError(f"sweep: unknown method {sweep.method!r}")
    if len(set(sweep.values)) != len(sweep.values):
      raise ValueError(f"sweep {sweep.method}:{sweep.key}: repeated values")
    for name, value in zip(sweep.points, sweep.values):
      try:
        configs[name] = point_config(configs[sweep.method], sweep.key, value)
      except ValueError as e:
        raise ValueError(f"sweep {sweep.method}: {e}") from None
      names.append(name)
  with out.unlocked():
    out.method_configs = configs
    out.methods = ",".join(names)
  return out


def _dummy_extra(method: methods.Method, shape):
  num_members, batch, classes = shape
  extra = {}
  if method.teacher is not None:
    extra["teacher_logits"] = jnp.zeros((1, batch, classes))
  if method.stale_refresh_steps:
    extra["peer_logits"] = jnp.zeros(shape)
  if method.input_transform is not None:
    extra["aux_logits"] = jnp.zeros(shape)
    extra["aux_teacher_logits"] = jnp.zeros((1, batch, classes))
  return extra


def stacked_method(sweep: Sweep, method_cfg, num_steps: int) -> methods.Method:
  """One Method for all points of `sweep`: its loss reads the run's coefficient from
  extra["coefficients"] and builds the point's loss from it (under the run vmap)."""
  built = [methods.build(p, point_config(method_cfg, sweep.key, v), num_steps)
           for p, v in zip(sweep.points, sweep.values)]
  def structure(m):
    t = m.input_transform
    fields = tuple(getattr(m, f.name) for f in dataclasses.fields(m)
                   if f.name not in ("name", "loss", "input_transform"))
    return fields, getattr(t, "func", t), getattr(t, "keywords", None)
  if any(structure(m) != structure(built[0]) for m in built[1:]):
    raise ValueError(f"sweep {sweep.method}:{sweep.key} changes the method's members, stages or "
                     f"input transform; it cannot share one program (use --mode=sequential)")

  def loss(logits, labels, step, extra):
    extra = dict(extra)
    value = extra.pop("coefficients")
    try:
      point = methods.build(sweep.method, point_config(method_cfg, sweep.key, value), num_steps)
      return point.loss(logits, labels, step, extra)
    except (TypeError, jax.errors.ConcretizationTypeError) as e:
      raise ValueError(f"sweep {sweep.method}:{sweep.key}: the method needs a Python number "
                       f"there ({type(e).__name__}); use --mode=sequential") from None

  return dataclasses.replace(built[0], name=sweep.method, loss=loss)


def check_traceable(sweep: Sweep, method_cfg, num_steps: int, num_classes: int = 3) -> None:
  """Traces the stacked loss once on dummy inputs; a ValueError in one line if it fails."""
  method = stacked_method(sweep, method_cfg, num_steps)
  shape = (method.num_members, 2, num_classes)
  fn = lambda v: method.loss(jnp.zeros(shape), jnp.zeros(2, jnp.int32), jnp.zeros((), jnp.int32),
                             dict(_dummy_extra(method, shape), coefficients=v))[0]
  jax.eval_shape(fn, jnp.float32(sweep.values[0]))


@dataclasses.dataclass
class _Unit:
  """What one stack trains: a plain method (sweep None) or every point of a sweep."""
  name: str
  sweep: Optional[Sweep]
  points: List[str]
  values: List[Optional[float]]


def _units(order: Sequence[str], sweeps: Sequence[Sweep]) -> List[_Unit]:
  by_point = {p: (s, v) for s in sweeps for p, v in zip(s.points, s.values)}
  units, seen = [], set()
  for name in order:
    if name not in by_point:
      units.append(_Unit(name, None, [name], [None]))
      continue
    sweep = by_point[name][0]
    if sweep.method not in seen:
      seen.add(sweep.method)
      units.append(_Unit(sweep.method, sweep, sweep.points, list(sweep.values)))
  return units


def _tile_runs(tree, times: int):
  return jax.tree_util.tree_map(lambda a: jnp.concatenate([a] * times), tree) if times > 1 \
      else tree


def _point_state(state: step_lib.TrainState, rows: slice, mesh) -> step_lib.TrainState:
  """The runs `rows` of a stacked state, placed as a study of those runs alone places them
  (so prediction runs the very program, on the very layout, of the point alone)."""
  point = state.replace(**{f: jax.tree_util.tree_map(lambda a: a[rows], getattr(state, f))
                           for f in ("params", "batch_stats", "opt_state", "rng",
                                     "first_nonfinite", "stale")})
  return jax.device_put(point, step_lib.state_sharding(mesh, point))


def _model(config, num_classes):
  model_cfg = dict(config.model)
  name = model_cfg.pop("name")
  return (models.get_model(name, num_classes, **model_cfg),
          stack.resolve_strategy(config.get("strategy", "auto"), models.uses_convolutions(name)))


def train_study(config, workdir: str, sweeps: Sequence[Sweep] = (), plain: Sequence[str] = (),
                validation_fraction: float = 0.0) -> Dict[str, Any]:
  """Trains `plain` methods and every sweep (S points x R runs in one stack each) and writes
  results.{json,csv,md} into `workdir`, one entry per method and per point.

  With `validation_fraction` > 0, that fraction of the training data is held out (seeded by
  config.seed), no run trains on it, and every entry gets a "validation" summary beside the
  test metrics (the honest coefficient selection of churn_jax/protocol). Finished entries are
  reused; an interrupted stack resumes from its checkpoint. A point whose runs diverge is left
  out and named in the returned "failed" list; the other points are kept.
  """
  host_devices.configure(settings.cpu_device_count(config))
  config = expand_config(config, sweeps, plain)
  if validation_fraction:
    with config.unlocked():
      config.validation_fraction = float(validation_fraction)  # Part of every fingerprint.
  validate.validate_config(config)
  num_steps = int(config.num_train_steps)
  for sweep in sweeps:
    check_traceable(sweep, config.method_configs[sweep.method], num_steps)
  dataset = data_lib.get_dataset(config.data)
  validation = None
  if validation_fraction:
    dataset, validation = dataset_lib.split_validation(dataset, float(validation_fraction),
                                                       int(config.seed))
  validate.validate_with_dataset(config, dataset)
  order = train.study_order(config, train.method_names(config))
  teachers = {config.method_configs[n].get("teacher") for n in order} - {None}
  if teachers & {s.method for s in sweeps}:
    raise ValueError("a teacher method cannot be swept; sweep its student")
  store = results_store.ResultsStore(workdir, config, order,  # Fails before any write.
                                     data=data_lib.provenance(dataset))
  with contextlib.ExitStack() as held:  # One study per workdir; SIGTERM -> checkpoint, stop.
    held.enter_context(workdir_lock.hold(workdir))
    held.enter_context(preemption.watch())
    store.begin()
    return _train_units(config, workdir, sweeps, order, teachers, store, dataset, validation,
                        num_steps)


def _train_units(config, workdir, sweeps, order, teachers, store, dataset, validation,
                 num_steps) -> Dict[str, Any]:
  """The body of train_study, under the workdir lock."""
  tx = step_lib.make_optimizer(config.optimizer, config.lr)
  model, strategy = _model(config, dataset.num_classes)
  num_runs, failed, states = int(config.num_runs), [], {}
  # One study's mesh layout for every stack, so each point splits its batch (and its runs)
  # over the devices as the point alone does: same reductions, same numbers.
  meshes, eval_batch = {}, int(config.get("eval_batch_size", 1000))
  for unit in _units(order, sweeps):
    todo = [i for i, p in enumerate(unit.points) if not store.is_finished(p)]
    if not todo:
      logging.info("%s: finished earlier, results reused", unit.name)
      continue
    if unit.sweep is None:
      method = methods.build(unit.name, config.method_configs[unit.name], num_steps)
      coefficients, ckpt_dir = None, store.checkpoint_dir(unit.name)
    else:
      sweep = dataclasses.replace(unit.sweep, values=tuple(unit.values[i] for i in todo))
      method = stacked_method(sweep, config.method_configs[unit.name], num_steps)
      coefficients = jnp.asarray(np.repeat(np.asarray(sweep.values, np.float32), num_runs))
      tag = hashlib.sha256(" ".join(results_store.fingerprint(config, p) for p in sweep.points)
                           .encode()).hexdigest()[:16]
      ckpt_dir = os.path.join(workdir, "checkpoints", f"{unit.name}@sweep-{tag}")
    teacher = None
    if method.teacher:
      teacher_method = methods.build(method.teacher, config.method_configs[method.teacher],
                                     num_steps)
      restore = train._restore_teacher  # pylint: disable=protected-access
      teacher = states.get(method.teacher) or restore(config, dataset, teacher_method, store, tx)
      teacher = _tile_runs(teacher, len(todo))
    run_ids = list(range(num_runs)) * len(todo)
    ckpt = checkpoint.MethodCheckpointer(ckpt_dir, config.get("checkpoint_every_steps", 0),
                                         config.get("checkpoints_to_keep", 2))
    logging.info("%s: %d point(s) x %d runs in one stack", unit.name, len(todo), num_runs)
    mesh = meshes.setdefault(method.num_members, sharding.make_mesh(
        num_runs, method.num_members, int(config.batch_size), strategy=strategy))
    try:
      out = train.train_method(config, dataset, method, run_ids=run_ids, tx=tx, mesh=mesh,
                               checkpointer=ckpt, teacher=teacher, coefficients=coefficients,
                               stop_on_nonfinite=unit.sweep is None)
    finally:
      ckpt.close()
    if unit.name in teachers:
      states[unit.name] = out.state
    first_bad = distributed.to_host(out.state.first_nonfinite)  # Spans processes.
    teacher_cost = (methods.build(method.teacher, config.method_configs[method.teacher],
                                  num_steps).training_cost if method.teacher else 0.0)
    for s, i in enumerate(todo):
      name, rows = unit.points[i], slice(s * num_runs, (s + 1) * num_runs)
      if (first_bad[rows] >= 0).any():
        logging.error("%s: non-finite parameters (first at step %d); left out", name,
                      int(first_bad[rows][first_bad[rows] >= 0].min()))
        failed.append(name)
        continue
      alpha = config.get("schurn_alpha", 1.0)
      state, probs = out.state, out.member_probs
      if unit.sweep is not None:  # Predict with the point's runs alone: the same program.
        state = _point_state(out.state, rows, mesh)
        probs = train.predict(model, state, dataset, strategy, eval_batch)[0]
      deployed = np.asarray(method.deployed_probs(probs))
      entry = evaluate.summarize(deployed, out.labels, alpha)
      entry.update(num_members=method.num_members, prediction=method.prediction,
                   training_cost=method.training_cost + teacher_cost,
                   inference_cost=method.inference_cost)
      if unit.sweep is not None:
        entry["sweep"] = {"method": unit.name, "key": unit.sweep.key, "value": unit.values[i]}
        if unit.sweep.fixed:  # A later stage: where its fixed coefficients came from.
          entry["sweep"]["fixed"] = {k: {"value": v, "from": src, "point": point,
                                         "selection": split}
                                     for k, v, src, point, split in unit.sweep.fixed}
      if validation is not None:
        val_probs, val_labels = train.predict(model, state, validation, strategy, eval_batch)
        entry["validation"] = evaluate.summarize(
            np.asarray(method.deployed_probs(val_probs)), val_labels, alpha)
      if jax.process_index() == 0:  # Every number traceable to a file the user can open.
        entry["predictions"] = predictions.save(workdir, name, deployed, np.asarray(probs),
                                                out.labels, range(num_runs), method.prediction)
      # The stack's wall time is shared by its points.
      store.add(name, entry, train_seconds=out.train_seconds / len(todo),
                input_seconds=out.input_seconds / len(todo))
      logging.info("%s: accuracy %.2f%%, churn %.2f%%", name, 100 * entry["accuracy"]["mean"],
                   100 * entry["churn"]["mean"])
  return dict(store.results, failed=failed)
