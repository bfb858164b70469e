"""The random streams of run r and member m: initial weights, perturbations, data order.

Every stream depends on the run id, not on its position in a stack, so a run trained alone
equals the same run trained among others (tests/engine/wiring_test.py, tests/study/
vary_streams_test.py pin each stream against `config.vary`).
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def member_keys(seed: int, run_ids: Sequence[int], num_members: int, vary_init: bool,
                salt: int = 0):
  """PRNG keys (R, M, 2): run r member m gets fold_in(fold_in(seed, r), m).

  Keys depend on the run id, not on its position in the stack, so a run trained alone
  starts exactly like the same run trained in a stack. A non-zero `salt` (a student of a
  two-stage method) gives fresh keys.
  """
  base = jax.random.PRNGKey(seed)
  if salt:
    base = jax.random.fold_in(base, 1_000_003 * salt)
  return jnp.stack([
      jnp.stack([jax.random.fold_in(jax.random.fold_in(base, r if vary_init else 0), m)
                 for m in range(num_members)]) for r in run_ids])


def run_keys(seed: int, run_ids: Sequence[int], vary_data: bool):
  """Per-run step keys (R, 2) (ODS / Gaussian perturbations): fold_in(seed + 1, r).

  They are per-step training noise like data order and augmentation, so they vary between
  runs exactly when the data does (`config.vary` "data"); with "init" alone or nothing, every
  run draws the same perturbations (Table 1's rows isolate one source each).
  """
  base = jax.random.PRNGKey(seed + 1)
  return jnp.stack([jax.random.fold_in(base, r if vary_data else 0) for r in run_ids])


def data_seeds(seed: int, run_ids: Sequence[int], vary_data: bool, streams_per_run: int = 1):
  """Data seeds of every (run, stream), run-major (Method.streams_per_run streams per run).

  Stream 0 of run r has the run's seed, so member 0 of an independent ensemble sees exactly
  the baseline's batches of run r; stream m > 0 (member m) gets a seed of its own.
  """
  return [int(np.random.SeedSequence([seed, r if vary_data else 0] + ([m] if m else []))
              .generate_state(1)[0]) for r in run_ids for m in range(streams_per_run)]
