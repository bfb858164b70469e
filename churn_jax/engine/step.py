"""The stacked train state, the optimizer, and the one jitted update for the whole stack."""

import functools
import json
import os
from typing import Any, Callable, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from churn_jax.core import schedules
from churn_jax.engine import sharding, stack
from churn_jax.engine.numerics import Numerics
from churn_jax.methods import Method


class TrainState(flax.struct.PyTreeNode):
  """Everything that changes during training; leaves of params/batch_stats/opt_state are (R, M, ...)."""
  step: jax.Array            # () int32, shared by all runs
  params: Any
  batch_stats: Any           # {} for models without BatchNorm
  opt_state: Any
  rng: jax.Array             # (R, 2) uint32: one key per run, folded with the step
  first_nonfinite: jax.Array  # (R, M) int32: first step with non-finite params, -1 if none
  stale: Any = flax.struct.field(default_factory=dict)  # Stale member copies, or {}.


def make_optimizer(opt_cfg, lr_cfg) -> optax.GradientTransformation:
  """SGD with (Nesterov) momentum, or Adam; L2 weight decay added to the gradient as in the paper.

  Built once per study: equal optimizers must be the same object, or equal states differ
  structurally (recompiles, sharding prefix errors).
  """
  lr = schedules.warmup_step_decay(lr_cfg.base, lr_cfg.get("warmup_steps", 0),
                                   tuple(lr_cfg.get("decay_steps", ())),
                                   lr_cfg.get("decay_factor", 0.1))
  name = opt_cfg.get("name", "sgd")
  if name == "sgd":
    opt = optax.sgd(lr, momentum=opt_cfg.get("momentum", 0.9) or None,
                    nesterov=bool(opt_cfg.get("nesterov", True)))
  elif name == "adam":
    opt = optax.adam(lr)
  else:
    raise ValueError(f"unknown optimizer {name!r}; known: sgd, adam")
  wd = float(opt_cfg.get("weight_decay", 0.0))
  return optax.chain(optax.add_decayed_weights(wd), opt) if wd else opt


def _over_stack(fn):
  """Maps a single-model function over the (R, M) axes, so every optax transform (even one
  with a global norm) acts on each model separately."""
  return jax.vmap(jax.vmap(fn))


def variables_of(state: TrainState) -> dict:
  """The Flax variables of the stacked members ({"params"[, "batch_stats"]})."""
  if state.batch_stats:
    return {"params": state.params, "batch_stats": state.batch_stats}
  return {"params": state.params}


def init_state(model: nn.Module, tx: optax.GradientTransformation, keys: jax.Array,
               run_rngs: jax.Array, sample_x: jax.Array, mesh=None,
               keep_stale: bool = False) -> TrainState:
  """Shape-first init: eval_shape -> shardings -> jit(init, out_shardings).

  Compiled with the step's CPU options: XLA:CPU's default -O2 spends 10-25 s compiling the
  random initialisers of one small model (MLP 9.5 s, LeNet-5 14.7, ResNet-8 25.7) against
  0.8-3.1 s at -O1, with bitwise-equal parameters (tests/engine/step_options_test.py).
  """
  def init_fn(keys, run_rngs):
    variables = stack.init_stack(model, keys, sample_x)
    params = variables["params"]
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       batch_stats=variables.get("batch_stats", {}),
                       opt_state=_over_stack(tx.init)(params), rng=run_rngs,
                       first_nonfinite=jnp.full(keys.shape[:2], -1, jnp.int32))
    return state.replace(stale=variables_of(state)) if keep_stale else state
  # Under a trace (jax.eval_shape of the whole init, as benchmarks/ do) this jit is nested,
  # and JAX takes compiler options only at the top level.
  options = None if isinstance(keys, jax.core.Tracer) else compiler_options()
  if mesh is None:
    return jax.jit(init_fn, compiler_options=options)(keys, run_rngs)
  abstract = jax.eval_shape(init_fn, keys, run_rngs)
  return jax.jit(init_fn, out_shardings=state_sharding(mesh, abstract),
                 compiler_options=options)(keys, run_rngs)


def state_sharding(mesh, state: TrainState) -> TrainState:
  stacked = lambda t: sharding.stacked_sharding(mesh, t)
  return TrainState(step=sharding.replicated(mesh), params=stacked(state.params),
                    batch_stats=stacked(state.batch_stats), opt_state=stacked(state.opt_state),
                    rng=sharding.per_run_sharding(mesh),
                    first_nonfinite=stacked(state.first_nonfinite), stale=stacked(state.stale))


def finite_members(tree) -> jax.Array:
  """(R, M) bool: whether every leaf of each member is finite."""
  leaves = jax.tree_util.tree_leaves(tree)
  per_leaf = [jnp.all(jnp.isfinite(x), axis=tuple(range(2, x.ndim))) for x in leaves]
  return jnp.stack(per_leaf).all(axis=0)


def _frozen_logits(model, variables, x, strategy, apply=stack.apply_stack):
  logits, _ = apply(model, variables, x, train=False, strategy=strategy)
  return jax.lax.stop_gradient(logits.astype(jnp.float32))


def _transform_inputs(method: Method, model, teacher, x, rngs, strategy, x_range,
                      apply=stack.apply_stack):
  """Applies the method's input transform run by run, each run with its own teacher."""
  outs = []
  for r in range(x.shape[0]):  # R is small; a loop keeps the teacher gradient per run simple.
    teacher_r = jax.tree_util.tree_map(lambda a: a[r:r + 1], teacher)
    logits_fn = lambda xr, t=teacher_r: apply(
        model, t, xr[None], train=False, strategy=strategy)[0][0]
    outs.append(method.input_transform(x[r], logits_fn, rngs[r], x_range))
  return jnp.stack(outs)


# XLA:CPU compiles its own kernels (fusions, loops) with LLVM; at -O1 instead of the default
# -O2 the ResNet-20 1x1 step compiled in 6.5-7.6 against 9.0-9.3 s (idle AMD Zen 4), stepped
# as fast (0.95-1.06, a tie) and trained bitwise-equal parameters for LeNet5, ResNet-20 and
# the MLP (docs/PERFORMANCE.md; tests/engine/step_options_test.py). The library convolutions (YNNPACK,
# Eigen) are precompiled and unaffected.
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
# A JSON object of XLA options in this variable replaces CPU_COMPILER_OPTIONS, in every process
# that inherits it: where compiling costs more than running (the tests' tiny studies,
# tests/conftest.py, which use -O0 without the fusion emitters and with one LLVM module, ~40%
# less CPU on study-heavy test files). Other options may change the last bits of results that
# are bitwise equal at the shipped ones (remat at -O1 without the fusion emitters: measured).
CPU_OPTIONS_ENV = "CHURN_JAX_CPU_COMPILER_OPTIONS"


def _env_options() -> Optional[dict]:
  text = os.environ.get(CPU_OPTIONS_ENV, "")
  if not text:
    return None
  try:
    options = json.loads(text)
  except ValueError:
    options = None
  if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
    raise ValueError(f"${CPU_OPTIONS_ENV} must be a JSON object of XLA options, got {text!r}")
  return options


def compiler_options(backend: Optional[str] = None) -> Optional[dict]:
  """XLA options for the train step on `backend` (default: JAX's): CPU_COMPILER_OPTIONS (or
  $CHURN_JAX_CPU_COMPILER_OPTIONS) on CPU, none elsewhere (GPU and TPU compile with their own
  defaults)."""
  backend = backend or jax.default_backend()
  if backend != "cpu":
    return None
  options = _env_options()
  return dict(CPU_COMPILER_OPTIONS) if options is None else options


def check_compiler_options() -> None:
  """Compiles a trivial program with $CHURN_JAX_CPU_COMPILER_OPTIONS when it is set on CPU: a
  bad name or value fails here, as one ValueError before the study writes anything, not at
  its first step. The shipped options need no check."""
  if _env_options() is None:
    return
  options = compiler_options()
  if not options:  # Not CPU: the variable does not apply.
    return
  try:
    jax.jit(lambda x: x + 1, compiler_options=options).lower(jnp.zeros(())).compile()
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"${CPU_OPTIONS_ENV}={os.environ.get(CPU_OPTIONS_ENV)!r}: {first}") from None


def make_train_step(model: nn.Module, method: Method, tx: optax.GradientTransformation,
                    strategy: str, x_range=None, teacher_model=None,
                    options: Optional[dict] = None, numerics: Optional[Numerics] = None,
                    steps: int = 1) -> Callable[..., Tuple[TrainState, dict]]:
  """One jitted, donated update of every run and member: (state, batch, teacher) -> state.

  The batch holds R * method.streams_per_run data streams (Method.member_data): one per run
  (every member sees its run's batch) or one per (run, member), reshaped here to (R, M, B, ...)
  so that one step, one sharding of the batch and one prefetcher serve both.

  The loss of the stack is the sum over runs of each run's method loss; runs share no
  parameters, so each run receives exactly its own gradient. `teacher` holds the frozen
  stage-1 variables (R, Mt, ...) of a two-stage method, else {}. What the method needs beyond
  its logits (stale peers, teacher outputs, perturbed inputs) is computed here, outside the
  differentiated function, and passed to the loss as `extra`. `teacher_model` applies the
  teacher when it differs from the student's model (a BatchEnsemble student); default `model`.
  `options`: XLA compiler options of the step; default `compiler_options()`, {} for none.
  `numerics`: compute dtype, matmul precision, remat and micro-batches (engine/numerics.py).
  `steps` > 1: the program trains that many steps with lax.scan over a block of batches
  (leaves (steps, R * streams, B, ...)) and returns the metrics of its last step.
  """
  teacher_model = model if teacher_model is None else teacher_model
  streams = method.streams_per_run
  numerics = numerics or Numerics()
  dtype = None if numerics.compute_dtype == "float32" else numerics.dtype
  apply = functools.partial(stack.apply_stack, compute_dtype=dtype)
  num_micro = numerics.microbatches

  def step_grads(state: TrainState, teacher, x, y, rngs, extra):
    """Gradients, per-run losses, metrics and new BatchNorm statistics of one (micro)batch."""
    extra, x_aux = dict(extra), None
    if method.teacher is not None:
      extra["teacher_logits"] = _frozen_logits(teacher_model, teacher, x, strategy,
                                               apply)
    if method.stale_refresh_steps:
      extra["peer_logits"] = _frozen_logits(model, state.stale, x, strategy, apply)
    if method.input_transform is not None:
      x_aux = _transform_inputs(method, teacher_model, teacher, x, rngs, strategy,
                                x_range, apply)
      extra["aux_teacher_logits"] = _frozen_logits(teacher_model, teacher, x_aux,
                                                   strategy, apply)

    def loss_fn(params):
      variables = dict(variables_of(state), params=params)
      logits, new_stats = apply(model, variables, x, train=True, strategy=strategy,
                                x_per_member=streams > 1, remat=numerics.remat)
      run_extra = dict(extra)
      if x_aux is not None:  # BatchNorm statistics come from the clean batch only.
        run_extra["aux_logits"] = apply(model, variables, x_aux, train=True, strategy=strategy,
                                        remat=numerics.remat)[0].astype(jnp.float32)
      run_losses, metrics = jax.vmap(method.loss, in_axes=(0, 0, None, 0))(
          logits.astype(jnp.float32), y, state.step, run_extra)
      return jnp.sum(run_losses), (run_losses, metrics, new_stats)

    grads, aux = jax.grad(loss_fn, has_aux=True)(state.params)
    return (grads,) + aux

  def train_step(state: TrainState, batch, teacher, coefficients=None):
    x, y = batch  # (R * streams, B, ...), (R * streams, B): one stream per data seed.
    if streams > 1:  # Independent members: stream r*M + m is member m of run r.
      x = x.reshape((-1, streams) + x.shape[1:])
      y = y.reshape((-1, streams) + y.shape[1:])
    rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(state.rng, state.step)
    extra = {}
    if coefficients is not None:  # Per-run coefficients (R,) of a stacked sweep (sweeps.py).
      extra["coefficients"] = coefficients
    if num_micro == 1:
      grads, run_losses, metrics, new_stats = step_grads(state, teacher, x, y, rngs, extra)
    else:  # Gradient accumulation: equal slices of the batch axis, results averaged.
      # Slice i holds examples i, i + n, i + 2n, ... (n slices), so a batch split over the
      # 'data' devices in contiguous blocks stays split the same way in every slice; a
      # lax.scan runs the slices one after another, so only one slice's activations are
      # live (unrolled, XLA kept them all: benchmarks/memory_check.py).
      axis = 2 if streams > 1 else 1
      size = x.shape[axis] // num_micro
      slices = lambda a: jnp.moveaxis(
          a.reshape(a.shape[:axis] + (size, num_micro) + a.shape[axis + 1:]), axis + 1, 0)

      def accumulate(total, xy):
        part = step_grads(state, teacher, xy[0], xy[1], rngs, extra)
        return jax.tree_util.tree_map(jnp.add, total, part), None

      zeros = jax.tree_util.tree_map(
          lambda s: jnp.zeros(s.shape, s.dtype),
          jax.eval_shape(step_grads, state, teacher, slices(x)[0], slices(y)[0], rngs, extra))
      total, _ = jax.lax.scan(accumulate, zeros, (slices(x), slices(y)))
      # Losses are means over examples, so the mean over equal slices is the batch's; a
      # BatchNorm model normalises each slice by its own statistics (ghost batches).
      grads, run_losses, metrics, new_stats = jax.tree_util.tree_map(
          lambda a: a / num_micro, total)
    updates, opt_state = _over_stack(tx.update)(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # NaN guard without a host sync per step: remember the first bad step of every member.
    bad = ~finite_members(params)
    first_nonfinite = jnp.where(bad & (state.first_nonfinite < 0), state.step + 1,
                                state.first_nonfinite)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              batch_stats=new_stats if state.batch_stats else state.batch_stats,
                              first_nonfinite=first_nonfinite)
    if method.stale_refresh_steps:  # Anil et al.: peers are copies refreshed every K steps.
      refresh = new_state.step % method.stale_refresh_steps == 0
      new_state = new_state.replace(stale=jax.tree_util.tree_map(
          lambda old, new: jnp.where(refresh, new, old), state.stale, variables_of(new_state)))
    return new_state, {"loss": run_losses, **metrics}

  def train_block(state: TrainState, batches, teacher, coefficients=None):
    """`steps` updates in one program: the loop runs on the device, not in Python."""
    body = lambda s, batch: train_step(s, batch, teacher, coefficients)
    state, metrics = jax.lax.scan(body, state, batches)
    return state, jax.tree_util.tree_map(lambda m: m[-1], metrics)

  fn = train_step if steps == 1 else train_block

  def traced(state: TrainState, batch, teacher, coefficients=None):
    with numerics.matmul_context():  # The precision is read while the step is traced.
      return fn(state, batch, teacher, coefficients)

  options = compiler_options() if options is None else options
  return jax.jit(traced, donate_argnums=0, compiler_options=options or None)


def make_predict(model: nn.Module, strategy: str, numerics: Optional[Numerics] = None,
                 options: Optional[dict] = None):
  """Jitted: (state, x (B, ...)) -> probabilities (R, M, B, K) of every member on shared x,
  computed in the training's compute dtype, the softmax in float32. `options`: XLA compiler
  options, default the step's (compiler_options(): -O1 on CPU compiled ResNet-20's forward pass
  in 2.78 s against 3.44 s at -O2, WRN-10-1's in 1.49 against 2.05 s, with bitwise the same
  probabilities there and on both quick studies), {} for none."""
  numerics = numerics or Numerics()
  options = compiler_options() if options is None else options
  dtype = None if numerics.compute_dtype == "float32" else numerics.dtype

  def predict(state: TrainState, x):
    with numerics.matmul_context():
      logits, _ = stack.apply_stack(model, variables_of(state), x, train=False,
                                    strategy=strategy, x_per_run=False, compute_dtype=dtype)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jax.jit(predict, compiler_options=options or None)
