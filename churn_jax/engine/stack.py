"""Stacked init and apply of one Flax model over leading (run, member) axes.

Variables are stored with two leading axes (R, M). How the stack executes is a separate
choice (`strategy`):
  "vmap": jax.vmap over both axes. Natural on GPU/TPU and fastest for dense nets on CPU.
  "loop": the R*M applications unrolled one after another inside the same jit. On XLA:CPU a
          vmapped convolution becomes a grouped convolution that measured ~5x slower than
          running the members in sequence (ResNet-20 x 2; docs/PERFORMANCE.md).
  "auto": "loop" for convolutional models on CPU, "vmap" otherwise.
Both strategies compute the same function; tests/engine/stack_test.py checks it.
"""

from typing import Any, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import flax.linen as nn

from churn_jax.engine import numerics

STRATEGIES = ("auto", "vmap", "loop")


def resolve_strategy(strategy: str, uses_convolutions: bool, backend: Optional[str] = None) -> str:
  """Returns the concrete strategy ("vmap" or "loop") for `strategy` on `backend`."""
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown execution strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
  if strategy != "auto":
    return strategy
  backend = backend or jax.default_backend()
  return "loop" if (backend == "cpu" and uses_convolutions) else "vmap"


def init_stack(model: nn.Module, keys: jax.Array, sample_x: jax.Array) -> Any:
  """Initialises variables for a (R, M) grid of PRNG keys; returns leaves shaped (R, M, ...)."""
  init_one = lambda k: model.init(k, sample_x, train=False)
  return jax.vmap(jax.vmap(init_one))(keys)


def _index(tree, r, m):
  return jax.tree_util.tree_map(lambda a: a[r, m], tree)


def _stack(trees):
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def apply_stack(model: nn.Module, variables: Any, x: jax.Array, *, train: bool,
                strategy: str, x_per_run: bool = True,
                x_per_member: bool = False, compute_dtype=None,
                remat: bool = False) -> Tuple[jax.Array, Any]:
  """Applies every (run, member) model.

  Args:
    model: the Flax module shared by all members.
    variables: {"params": ..., ["batch_stats": ...]} with leading (R, M) axes.
    x: inputs (R, B, ...) when `x_per_run`, else (B, ...) shared by all runs (evaluation);
      (R, M, B, ...) with `x_per_member`: member m of run r sees x[r, m] (independent data).
    train: passed to the model; in training BatchNorm statistics are updated.
    strategy: "vmap" or "loop" (resolve "auto" first with `resolve_strategy`).
    compute_dtype: None, or the dtype (bfloat16) that parameters and inputs are cast to
      for the forward pass; BatchNorm statistics stay as stored (engine/numerics.py).
    remat: recompute each member's activations in the backward pass (jax.checkpoint):
      the same values, less memory held between the passes.

  Returns:
    logits (R, M, B, K) and the new "batch_stats" collection stacked like `variables`
    (empty dict for models without BatchNorm, or when not training).
  """
  chex.assert_equal_shape_prefix(jax.tree_util.tree_leaves(variables) + [x] * x_per_run, 1)
  mutable = ["batch_stats"] if (train and "batch_stats" in variables) else False

  def apply_one(v, xb):
    if compute_dtype is not None:
      v = dict(v, params=numerics.cast_floating(v["params"], compute_dtype))
      xb = xb.astype(compute_dtype)
    if mutable:
      logits, new_state = model.apply(v, xb, train=True, mutable=mutable)
      return logits, new_state["batch_stats"]
    return model.apply(v, xb, train=train), {}

  if remat:
    apply_one = jax.checkpoint(apply_one)
  if x_per_member and not x_per_run:
    raise ValueError("x_per_member needs x_per_run")
  if strategy == "vmap":
    over_members = jax.vmap(apply_one, in_axes=(0, 0 if x_per_member else None))
    over_runs = jax.vmap(over_members, in_axes=(0, 0 if x_per_run else None))
    return over_runs(variables, x)
  if strategy != "loop":
    raise ValueError(f"apply_stack needs a concrete strategy ('vmap' or 'loop'), got {strategy!r}")
  num_runs, num_members = jax.tree_util.tree_leaves(variables["params"])[0].shape[:2]
  logits, stats = [], []
  for r in range(num_runs):
    xr = x[r] if x_per_run else x
    row = [apply_one(_index(variables, r, m), xr[m] if x_per_member else xr)
           for m in range(num_members)]
    logits.append(jnp.stack([out for out, _ in row]))
    stats.append(_stack([s for _, s in row]))
  return jnp.stack(logits), _stack(stats)
