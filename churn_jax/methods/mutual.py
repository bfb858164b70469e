"""Peer distillation with independent updates: each member distils from its peers' predictions
held fixed (stop-gradient), so member i's parameters only receive the gradient of its own term.

  L = sum_i [CE_i + beta(t) * mean_{j != i} D(sg(p_j), p_i)]

kind "mutual": deep mutual learning (Zhang et al. 2018, "Deep Mutual Learning", eqs. 3-4 and
  10), D = KL(p_j || p_i). The paper updates the members in turn; we update them simultaneously
  from the same batch, which is what "independent updates" means here (each member's gradient
  treats its peers as constants). For M > 2 the paper averages the peer KLs (eq. 10), as we do.
  beta defaults to 1 (the paper has no weight).
kind "codistill_ce": co-distillation of Anil et al. 2018 ("Large scale distributed neural
  network training through online distillation", Alg. 1), D = CE(p_j, p_i), the distillation
  loss on the peers' soft predictions, switched on after a burn-in (use a step_burnin schedule
  for beta). Anil et al. read peers from stale checkpoints refreshed every few hundred steps;
  `make_loss(..., use_stale=True)` returns a loss that takes those peer logits (M, B, K) as a
  fourth argument for a trainer that keeps stale copies. `build_codistill_ce` uses fresh peers
  (peer_logits = sg(logits)), the "no staleness" variant. Alg. 1 distils from the average of
  the peers' predictions; CE is linear in its target, so CE(mean_j p_j, p_i) equals the mean of
  the peer CEs used here.

D(q, p_i) for a fixed q differs between KL and CE only by H(q), so both kinds have the same
gradient d/dz_i = p_i - mean_j p_j (times beta, per example) and differ in the logged value.
The deployed model is member 0 (either model can be kept); training costs M models. Members
share every batch (member_data "shared": each distils from its peers on the same examples).

cfg keys: num_members (default 2), beta (number or schedule; default 1.0).
"""

import jax
import jax.numpy as jnp

from churn_jax.core import losses, schedules
from churn_jax.methods import base


def _kl(peer_logits, logits):
  return losses.kl_divergence(peer_logits, logits)


def _ce(peer_logits, logits):
  return losses.soft_cross_entropy(jax.nn.softmax(peer_logits), logits)


DISTANCES = {"kl": _kl, "ce": _ce}


def member_terms(logits, labels, peer_logits, beta, distance="ce"):
  """Per-member objectives CE_i + beta * mean_{j != i} D(sg(peer_j), p_i).

  Args:
    logits: (M, B, K) logits of the members being trained.
    labels: (B,) integer labels.
    peer_logits: (M, B, K) logits of the peers (the members themselves, or stale copies); always
      under stop_gradient, so term i depends on logits[i] only.
    beta: distillation weight.
    distance: "kl" (mutual learning) or "ce" (Anil et al.).
  Returns:
    (terms, ce, distill), each (M,).
  """
  num_members = logits.shape[0]
  if num_members < 2:
    raise ValueError(f"peer distillation needs >= 2 members, got {num_members}")
  dist = DISTANCES[distance]
  peers = jax.lax.stop_gradient(peer_logits)
  ce = jnp.stack([losses.cross_entropy(logits[i], labels) for i in range(num_members)])
  distill = jnp.stack([
      sum(dist(peers[j], logits[i]) for j in range(num_members) if j != i) / (num_members - 1)
      for i in range(num_members)])
  return ce + beta * distill, ce, distill


def peer_distill_loss(logits, labels, peer_logits, beta, distance="ce"):
  """Sum over members of `member_terms`, and the mean CE / distillation metrics."""
  terms, ce, distill = member_terms(logits, labels, peer_logits, beta, distance)
  return jnp.sum(terms), {"ce": jnp.mean(ce), "distill": jnp.mean(distill),
                          "coef/beta": jnp.asarray(beta, jnp.float32)}


def anil_loss(logits, labels, peer_logits, beta):
  """Anil et al. 2018: sum_i [CE_i + beta * mean_{j != i} CE(sg(softmax(peer_j)), p_i)]."""
  return peer_distill_loss(logits, labels, peer_logits, beta, "ce")


def mutual_loss(logits, labels, peer_logits, beta):
  """Zhang et al. 2018: sum_i [CE_i + beta * mean_{j != i} KL(sg(p_j) || p_i)]."""
  return peer_distill_loss(logits, labels, peer_logits, beta, "kl")


def make_loss(beta_fn, distance="ce", use_stale=False):
  """The Method loss: fresh peers, or the stale copies the trainer passes in extra."""
  def loss(logits, labels, step, extra=None):
    # Fresh peers: the members' own current logits, held fixed by member_terms.
    peers = extra["peer_logits"] if use_stale else logits
    return peer_distill_loss(logits, labels, peers, beta_fn(step), distance)
  return loss


def _build(name, cfg, num_steps, distance) -> base.Method:
  num_members = int(cfg.get("num_members", 2))
  if num_members < 2:
    raise ValueError(f"method {name!r}: peer distillation needs num_members >= 2, "
                     f"got {num_members}")
  beta_fn = schedules.from_config(cfg.get("beta", 1.0), num_steps)
  # Anil et al. 2018 read the peers from copies refreshed every few hundred steps.
  refresh = int(cfg.get("stale_refresh_steps", 0) or 0)
  return base.Method(name=name, num_members=num_members,
                     loss=make_loss(beta_fn, distance, use_stale=refresh > 0),
                     training_cost=float(num_members), stale_refresh_steps=refresh)


def build(name, cfg, num_steps) -> base.Method:
  """kind "mutual"."""
  return _build(name, cfg, num_steps, "kl")


def build_codistill_ce(name, cfg, num_steps) -> base.Method:
  """kind "codistill_ce" (fresh peers)."""
  return _build(name, cfg, num_steps, "ce")
