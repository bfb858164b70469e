"""Input checks of the metrics: ValueError on concrete bad input, chex shape asserts at trace time."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import chex
import jax
import numpy as np

# Rows are accepted as probabilities when their sum is within this of 1
# (float32 softmax outputs routinely miss 1 by ~1e-7; logits miss by a lot).
_ROW_SUM_TOL = 1e-3
# Entries where both probabilities are below this are ignored (count 0) by the
# relative prediction difference, which is otherwise 0/0 there.
_RELATIVE_EPS = 1e-7
# Floor for probabilities inside log() so NLL stays finite.
_NLL_CLIP = 1e-12


# ---------------------------------------------------------------------------
# Validation helpers (only run on concrete values, never on tracers).
# ---------------------------------------------------------------------------


def _is_concrete(*xs: Any) -> bool:
  """True when no argument is a JAX tracer, i.e. values can be inspected."""
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_probs(probs: Any, name: str = "probs") -> None:
  """Checks that `probs` is a non-empty (N, K) array of probability rows."""
  # Shapes are static, so they are checked even for tracers.
  shape = tuple(np.shape(probs))
  if len(shape) != 2:
    raise ValueError(
        f"{name} must be 2-D (num_examples, num_classes), got shape {shape}"
    )
  if 0 in shape:
    raise ValueError(
        f"{name} must have at least one example and one class, got shape"
        f" {shape}"
    )
  if not _is_concrete(probs):
    return
  p = np.asarray(probs, dtype=np.float64)
  negative_rows = np.any(p < 0, axis=1)
  if negative_rows.any():
    raise ValueError(
        f"{name} must hold probabilities (e.g. softmax outputs, not logits):"
        f" {int(negative_rows.sum())} of {shape[0]} rows have negative"
        f" entries (min {p.min():.6g})"
    )
  sums = p.sum(axis=1)
  deviation = np.abs(sums - 1.0)
  # `~(x <= tol)` rather than `x > tol` so that NaN rows are reported too.
  bad_rows = ~(deviation <= _ROW_SUM_TOL)
  if bad_rows.any():
    worst = np.nan if np.isnan(sums).any() else sums[np.argmax(deviation)]
    raise ValueError(
        f"{name} must hold probabilities (e.g. softmax outputs, not logits):"
        f" {int(bad_rows.sum())} of {shape[0]} rows do not sum to 1 within"
        f" {_ROW_SUM_TOL:g} (worst sum {worst:.6g})"
    )


def _check_same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
  """Checks that two arrays have identical shapes (shapes are always static)."""
  if np.shape(a) != np.shape(b):
    raise ValueError(
        f"{name_a} and {name_b} must have the same shape, got"
        f" {tuple(np.shape(a))} and {tuple(np.shape(b))}"
    )


def _check_pair(probs_a: Any, probs_b: Any) -> None:
  _check_probs(probs_a, "probs_a")
  _check_probs(probs_b, "probs_b")
  _check_same_shape(probs_a, probs_b, "probs_a", "probs_b")


def _check_labels(labels: Any, probs: Any) -> None:
  """Checks that `labels` are N integer class ids in [0, K) for (N, K) probs."""
  num_examples, num_classes = np.shape(probs)
  if np.ndim(labels) != 1 or np.shape(labels)[0] != num_examples:
    raise ValueError(
        f"labels must have shape ({num_examples},) to match probs of shape"
        f" {tuple(np.shape(probs))}, got shape {tuple(np.shape(labels))}"
    )
  concrete = _is_concrete(labels)
  # Dtypes are static, so this check also runs for tracers.
  y = np.asarray(labels) if concrete else labels
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}")
  if not concrete:
    return
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(
        f"labels must lie in [0, {num_classes}), got values in"
        f" [{y.min()}, {y.max()}]"
    )


def _check_positive(value: Any, name: str) -> None:
  if _is_concrete(value) and not float(value) > 0:
    raise ValueError(f"{name} must be > 0, got {value}")


def _assert_probs(*probs: jax.Array) -> None:
  """chex: (N, K) probabilities, all of one shape (a kernel's input contract)."""
  chex.assert_rank(list(probs), 2)
  chex.assert_equal_shape(list(probs))


def _assert_labelled(probs: jax.Array, labels: jax.Array) -> None:
  """chex: (N, K) probabilities and (N,) labels."""
  chex.assert_rank(probs, 2)
  chex.assert_shape(labels, probs.shape[:1])


def _scalar_results(fn: Callable[..., Any]) -> Callable[..., Any]:
  """chex: a public metric returns a scalar, or a dict of scalars."""
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    out = fn(*args, **kwargs)
    chex.assert_rank(jax.tree_util.tree_leaves(out), 0)
    return out
  return wrapped


def _check_num_bins(num_bins: Any) -> None:
  # Bin count sets array shapes, so it must be a Python int even under jit.
  if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)):
    raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
  if num_bins < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}")
