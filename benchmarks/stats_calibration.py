"""False-verdict rate and power of the candidate verdicts, on simulated studies.

  python benchmarks/stats_calibration.py [--runs 3,5,10] [--sims 400] [--metrics all]

For each R and scenario (null: method and reference drawn from one distribution; churn: the
method's run noise scaled by 0.9; accuracy: its true-class margin +0.1; churn_jax/protocol/
simulate.py), `--sims` comparisons of R runs against R runs on 2,000 test examples (10
classes) are judged by each candidate at the 5% level (two-sided), and one line per (R,
scenario, metric) prints: for the null the share of comparisons with any verdict (false rate),
for an effect the share 'held' (power), per candidate:

  paired-jk   stats.difference: paired leave-one-run-out jackknife t, R-1 df (the one chosen)
  welch-jk    the same jackknife per method, variances added, Welch-Satterthwaite df
  bootstrap   percentile bootstrap over runs, each method resampled alone (the earlier method)
  perm        permutation of the 2R run labels (exact up to 1,000 labelings, else 1,000 drawn);
              for pair metrics it needs churn between runs of different methods, which the
              simulation has and results.json does not (churn and accuracy only)
  signflip    paired sign-flip permutation, exact (per-run metrics only)

Monte-Carlo error of a rate near 5% with 400 comparisons: about +-1.1 points (1 s.e.).
"""

import argparse
import itertools
import sys
import time

import numpy as np

from churn_jax.protocol import simulate, stats

SCENARIOS = ((None, 0.0), ("churn", 0.1), ("accuracy", 0.1))
LEVEL = 0.95
BOOT = 1000
PERM = 1000


def bootstrap_verdict_p(entry, ref, metric, rng):
  """1 where the percentile interval excludes 0 (a verdict), else 0; and the diff's sign."""
  draws = []
  for e in (entry, ref):
    r = e["num_runs"]
    idx = rng.integers(0, r, size=(BOOT, r))
    if metric in stats.PAIRWISE:
      m = stats.pair_matrix(e[metric]["values"], r)
      sub = m[idx[:, :, None], idx[:, None, :]]
      valid = (idx[:, :, None] < idx[:, None, :]) & np.isfinite(sub)  # Distinct runs only.
      with np.errstate(invalid="ignore"):
        draws.append(np.where(valid, sub, 0).sum((1, 2)) / valid.sum((1, 2)))
    else:
      draws.append(np.asarray(e[metric]["values"])[idx].mean(1))
  diff = draws[0] - draws[1]
  diff = diff[np.isfinite(diff)]
  low, high = np.percentile(diff, [2.5, 97.5])
  return low > 0 or high < 0


def _labelings(total, r, rng):
  combos = list(itertools.islice(itertools.combinations(range(total), r), PERM + 1))
  if len(combos) <= PERM:
    g = np.zeros((len(combos), total))
    for i, c in enumerate(combos):
      g[i, list(c)] = 1
    return g, True
  g = np.zeros((PERM, total))
  for i in range(PERM):
    g[i, rng.choice(total, r, replace=False)] = 1
  return g, False


def permutation_p(pred, labels, metric, rng):
  """(S,) two-sided p of the permutation test over the 2R run labels (churn or accuracy);
  pred: (S, 2, R, N) predicted classes."""
  s, _, r = pred.shape[:3]
  pred = pred.reshape(s, 2 * r, -1)
  g, exact = _labelings(2 * r, r, rng)
  g[0] = np.r_[np.ones(r), np.zeros(r)]  # The observed labeling is always one of them.
  if metric == "accuracy":
    v = (pred == labels[:, None]).mean(-1)  # (S, 2R)
    stat = (v @ g.T - v @ (1 - g).T) / r  # (S, G)
  else:
    m = np.stack([(pred[:, i, None] != pred).mean(-1) for i in range(2 * r)], 1)  # (S,2R,2R)
    npairs = r * (r - 1)  # Ordered pairs within a group; the diagonal is 0.
    stat = (np.einsum("gi,sij,gj->sg", g, m, g) - np.einsum("gi,sij,gj->sg", 1 - g, m, 1 - g))
    stat /= npairs
  obs = np.abs(stat[:, :1])
  return (np.abs(stat) >= obs - 1e-12).mean(1) if exact else \
      ((np.abs(stat) >= obs - 1e-12).sum(1)) / g.shape[0]


def signflip_p(entry, ref, metric):
  d = np.asarray(entry[metric]["values"]) - np.asarray(ref[metric]["values"])
  signs = np.array(list(itertools.product((1, -1), repeat=len(d))))
  stat = np.abs(signs @ d)
  return float((stat >= abs(d.sum()) - 1e-12).mean())


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", default="3,5,10")
  parser.add_argument("--sims", type=int, default=400)
  parser.add_argument("--metrics", default="all")
  parser.add_argument("--shared", type=float, default=0.3,
                      help="share of run noise common to run r of both methods")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  metrics = (simulate.PER_RUN + simulate.PAIR if args.metrics == "all"
             else tuple(args.metrics.split(",")))
  rng = np.random.default_rng(args.seed)
  print(f"# {args.sims} comparisons per row, 2000 examples, 10 classes, shared={args.shared}",
        flush=True)
  for r in map(int, args.runs.split(",")):
    for effect, size in SCENARIOS:
      start = time.time()
      logits_all, labels_all, pairs = [], [], []
      for lo in range(0, args.sims, 25):
        logits, labels = simulate.sample_logits(rng, min(25, args.sims - lo), r,
                                                effect=effect, size=size, shared=args.shared)
        pairs += simulate.entries(simulate.metric_values(logits, labels, metrics))
        if any(m in ("churn", "accuracy") for m in metrics):
          logits_all.append(logits.argmax(-1))
          labels_all.append(labels)
      sim_s = time.time() - start
      name = "null" if effect is None else f"{effect} effect"
      for metric in metrics:
        t0 = time.time()
        rates = {}
        rule = (lambda d: d["verdict"] in ("held", "reversed")) if effect is None else \
            (lambda d: d["verdict"] == "held")
        jk = [stats.difference(e, f, metric) for e, f in pairs]
        rates["paired-jk"] = np.mean([rule(d) for d in jk])
        rates["welch-jk"] = np.mean([rule(stats.difference(e, f, metric, paired=False))
                                     for e, f in pairs])
        better = lambda e, f: ((e[metric]["mean"] < f[metric]["mean"])
                               == stats.LOWER_IS_BETTER[metric])
        boot = [bootstrap_verdict_p(e, f, metric, rng) for e, f in pairs]
        rates["bootstrap"] = np.mean([b and (effect is None or better(e, f))
                                      for b, (e, f) in zip(boot, pairs)])
        if metric in ("churn", "accuracy"):
          ps = np.concatenate([permutation_p(lg, lb, metric, rng)
                               for lg, lb in zip(logits_all, labels_all)])
          rates["perm"] = np.mean([(p < 0.05) and (effect is None or better(e, f))
                                   for p, (e, f) in zip(ps, pairs)])
        if metric in simulate.PER_RUN:
          rates["signflip"] = np.mean([(signflip_p(e, f, metric) < 0.05)
                                       and (effect is None or better(e, f)) for e, f in pairs])
        diff = 100 * np.mean([d["diff"] for d in jk])
        mde = 100 * np.nanmean([np.nan if d["mde"] is None else d["mde"] for d in jk])
        cells = " ".join(f"{k}={v:.3f}" for k, v in rates.items())
        print(f"R={r:<2} {name:<15} {metric:<16} {'false' if effect is None else 'power'}: "
              f"{cells} | mean diff {diff:+.3f} MDE {mde:.3f} (x100) | "
              f"{sim_s + time.time() - t0:.1f}s", flush=True)
        sim_s = 0.0


if __name__ == "__main__":
  main(sys.argv[1:])
