"""Member diversity of a deployed ensemble (Nam et al. 2021, "Diversity Matters When Learning
From Ensembles").

Nam et al. argue that a distilled student should keep the function diversity of its deep-
ensemble teacher, and compare the diversity of the DE-4 teacher's members with that of the
BatchEnsemble-4 student's. The measure they compute is the authors' code's
(cs-giung/giung2, giung2/evaluation/diversity.py: `compute_kld`): the KL divergence between the
predictive distributions of two members, averaged over the ordered pairs i != j of the E
members and over the test examples,

    KLD = 1 / (E (E - 1)) sum_{i != j} 1/N sum_n KL(p_j(x_n) || p_i(x_n)).

(The papers folder holds only their abstract, so the definition is taken from that code.)
Beside it, the pairwise top-1 disagreement of the members (the fraction of test examples on
which two members' argmax differ, averaged over pairs i < j; Fort et al. 2019's measure) is
reported: it is churn between members, the quantity this project measures between runs.

Both are per run: a study gives (R,) values, one per trained ensemble, summarised as mean and
std over runs.
"""

import os
from typing import Dict, List, Optional

import numpy as np

from churn_jax.outputs import predictions
from churn_jax.protocol import stats

_EPS = 1e-12  # log(0) guard for a member that gives a class probability 0.


def _check(member_probs) -> np.ndarray:
  probs = np.asarray(member_probs, np.float64)
  if probs.ndim != 4 or probs.shape[1] < 2:
    raise ValueError(f"member probabilities must be (R, E >= 2, N, K), got {probs.shape}")
  return probs


def pairwise_kl(member_probs) -> np.ndarray:
  """(R,) Nam et al.'s KLD of each run's E members: member_probs (R, E, N, K)."""
  probs = _check(member_probs)
  size = probs.shape[1]
  logs = np.log(probs + _EPS)
  # sum_k p_j (log p_j - log p_i) for every (j, i): (R, E_j, E_i, N).
  kl = (probs[:, :, None] * (logs[:, :, None] - logs[:, None, :])).sum(-1)
  off = ~np.eye(size, dtype=bool)
  return kl[:, off].mean(axis=(1, 2))


def pairwise_disagreement(member_probs) -> np.ndarray:
  """(R,) top-1 disagreement of each run's E members, averaged over pairs and examples."""
  pred = _check(member_probs).argmax(-1)  # (R, E, N)
  size = pred.shape[1]
  differ = pred[:, :, None, :] != pred[:, None, :, :]  # (R, E, E, N)
  upper = np.triu(np.ones((size, size), bool), 1)
  return differ[:, upper].mean(axis=(1, 2))


def study_rows(workdir: str, results: Dict) -> List[Dict]:
  """One row per method of a finished study whose deployed model has E >= 2 members.

  Reads each method's predictions file (predictions.deployed_members: a deep ensemble's
  `members`, a BatchEnsemble's `model_members`); methods without member predictions (single
  models, files written before model_members existed) have no row.
  """
  rows = []
  for name, entry in results["methods"].items():
    info = entry.get("predictions")
    if not info:
      continue
    members = predictions.deployed_members(
        predictions.load(os.path.join(workdir, info["path"])))
    if members is None or members.shape[1] < 2:
      continue
    kld, dis = pairwise_kl(members), pairwise_disagreement(members)
    rows.append({"method": name, "members": int(members.shape[1]), "runs": len(kld),
                 "kld": (float(kld.mean()), float(kld.std())),
                 "disagreement": (float(dis.mean()), float(dis.std())),
                 "kld_values": kld.tolist()})
  return rows


def against(rows: List[Dict], reference: str) -> Dict[str, Dict]:
  """KLD of every other row minus `reference`'s: stats.difference (paired by run index, as
  student r learnt from teacher r), Holm over the rows compared. "held" = more diverse,
  the direction Nam et al. predict for ODS students against plain KD ("reversed" = less)."""
  entry = lambda r: {"num_runs": r["runs"], "kld": {"mean": r["kld"][0],
                                                    "values": r["kld_values"]}}
  ref = next(r for r in rows if r["method"] == reference)
  others = [r for r in rows if r["method"] != reference]
  diffs = [stats.difference(entry(r), entry(ref), "kld", lower_is_better=False)
           for r in others]
  stats.judge(diffs)
  return {r["method"]: d for r, d in zip(others, diffs)}


def rows_markdown(rows: List[Dict], teacher: Optional[str] = None,
                  reference: Optional[str] = None) -> str:
  """The member-diversity table; `teacher` (a method name) is marked as such, and with a
  `reference` a column of KLD differences against it ("held" = more diverse)."""
  diffs = against(rows, reference) if reference else {}
  head = " ΔKLD vs " + reference + " (x1000) |" if reference else ""
  lines = ["| method | members | runs | KLD between members (Nam et al.) | "
           "top-1 disagreement between members % |" + head,
           "|---|---|---|---|---|" + ("---|" if reference else "")]
  for r in rows:
    name = f"{r['method']} (teacher)" if r["method"] == teacher else r["method"]
    cell = ""
    if reference:
      cell = " " + (stats.verdict_text(diffs[r["method"]], scale=1000.0)
                    if r["method"] in diffs else "-") + " |"
    lines.append(f"| {name} | {r['members']} | {r['runs']} | "
                 f"{r['kld'][0]:.4f} ± {r['kld'][1]:.4f} | "
                 f"{100 * r['disagreement'][0]:.2f} ± {100 * r['disagreement'][1]:.2f} |" + cell)
  return "\n".join(lines) + "\n"
