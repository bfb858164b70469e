"""Accuracy and churn on the single-view and multi-view test slices of the multi-view data.

  python experiments/multiview_slices.py --config=experiments/multiview.py [--out=slices.json]

Trains the config's methods (each two-stage method after its teacher) with
churn_jax.study.train.train_method, takes every method's deployed test predictions (R, N, K) and
reports, per slice: accuracy (mean ± std over runs), churn (mean ± std over run pairs) and,
for the patch-wise net, the fraction of classes whose both views the deployed model learned.
Each method is compared with the baseline: Welch's t-test on per-run accuracy and a
bootstrap over runs (95% interval) on the difference of mean pairwise churn.
"""

import json
import sys
import time

from absl import app, flags
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
from scipy import stats

from churn_jax import data as data_lib, methods
from churn_jax.engine import step as step_lib
from churn_jax.runtime import host_devices
from churn_jax.study import settings, train, validate

FLAGS = flags.FLAGS


def _define_flags():
  """Flags exist only when run as a script, so tests can import the functions."""
  config_flags.DEFINE_config_file("config", None, "experiments/multiview.py[:args]",
                                  lock_config=True)
  flags.DEFINE_string("out", "", "Optional JSON file for the per-run values.")
  flags.DEFINE_integer("bootstrap", 2000, "Bootstrap resamples of the runs.")

SLICES = ("all", "single", "multi")


def _slice_masks(single_view):
  single_view = np.asarray(single_view, bool)
  return {"all": np.ones_like(single_view), "single": single_view, "multi": ~single_view}


def _pair_churn(pred, mask):
  """(R, R) churn between the runs' argmax predictions on the examples in `mask`."""
  p = pred[:, mask]
  return (p[:, None, :] != p[None, :, :]).mean(-1)


def slice_values(probs, labels, single_view):
  """Per-run accuracy (R,) and pairwise churn matrix (R, R) on each slice."""
  pred = np.asarray(probs).argmax(-1)
  labels = np.asarray(labels)
  out = {}
  for name, mask in _slice_masks(single_view).items():
    out[name] = {"accuracy": (pred[:, mask] == labels[mask]).mean(-1),
                 "churn_matrix": _pair_churn(pred, mask)}
  return out


def _mean_pairs(matrix, idx=None):
  """Mean churn over pairs i < j of runs `idx` (indices into matrix), skipping equal runs."""
  idx = np.arange(len(matrix)) if idx is None else np.asarray(idx)
  sub = matrix[np.ix_(idx, idx)]
  distinct = idx[:, None] != idx[None, :]
  return sub[distinct].mean() if distinct.any() else np.nan


def compare(values_a, values_b, num_resamples, seed=0):
  """Method b minus method a: accuracy (Welch) and churn (bootstrap over runs) per slice."""
  rng = np.random.default_rng(seed)
  out = {}
  for name in SLICES:
    acc_a, acc_b = values_a[name]["accuracy"], values_b[name]["accuracy"]
    welch = stats.ttest_ind(acc_b, acc_a, equal_var=False)
    ca, cb = values_a[name]["churn_matrix"], values_b[name]["churn_matrix"]
    diffs = [_mean_pairs(cb, rng.integers(0, len(cb), len(cb)))
             - _mean_pairs(ca, rng.integers(0, len(ca), len(ca))) for _ in range(num_resamples)]
    lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
    out[name] = {"accuracy_diff": float(acc_b.mean() - acc_a.mean()),
                 "accuracy_welch_p": float(welch.pvalue),
                 "churn_diff": float(_mean_pairs(cb) - _mean_pairs(ca)),
                 "churn_diff_ci95": (float(lo), float(hi))}
  return out


def view_correlation(params, views):
  """(R, k, 2): max over members and filters of <w_{j,r}, v_{j,l}> for each class view."""
  w = np.asarray(params["filters"])
  return np.einsum("rmjfd,jld->rmjfl", w, views).max(axis=(1, 3))


def views_learned(params, views, rho):
  """Per run: fraction of classes whose views BOTH reach rho in some filter of some member.

  `params` are the PatchNet filters (R, M, k, m, d); a view counts as learned when
  max over members and filters of <w_{j,r}, v_{j,l}> >= rho (the linear phase of ReLU~).
  Also returns the fraction with at least one view learned.
  """
  learned = view_correlation(params, views) >= rho
  return learned.all(-1).mean(-1), learned.any(-1).mean(-1)


def run_methods(config, dataset):
  """{method: (deployed probs (R, N, K), labels (N,), final state)} in study order."""
  order = train.study_order(config, train.method_names(config))
  num_steps = int(config.num_train_steps)
  tx = step_lib.make_optimizer(config.optimizer, config.lr)
  out = {}
  for name in order:
    method = methods.build(name, config.method_configs[name], num_steps)
    teacher = out[method.teacher][2] if method.teacher else None
    run = train.train_method(config, dataset, method, tx=tx, teacher=teacher)
    out[name] = (np.asarray(method.deployed_probs(run.member_probs)), run.labels, run.state)
  return out


def _fmt(values):
  values = 100 * np.asarray(values, float)
  return f"{values.mean():.1f} ± {values.std():.1f}"


def report(config, dataset, results, num_resamples):
  """Markdown tables (printed) and a JSON-able dict of every per-run value."""
  single = dataset.single_view_test
  values = {name: slice_values(probs, labels, single) for name, (probs, labels, _) in
            results.items()}
  patchnet = config.model.name == "patchnet"
  lines = ["| method | acc all | acc single-view | acc multi-view | churn all | "
           "churn single-view | churn multi-view |" + (" both views learned |" if patchnet
                                                       else ""),
           "|---" * (7 + patchnet) + "|"]
  dump = {"num_runs": int(config.num_runs), "methods": {}}
  for name, v in values.items():
    pairs = {s: v[s]["churn_matrix"][np.triu_indices(len(v[s]["churn_matrix"]), 1)]
             for s in SLICES}
    row = [name] + [_fmt(v[s]["accuracy"]) for s in SLICES] + [_fmt(pairs[s]) for s in SLICES]
    entry = {s: {"accuracy": v[s]["accuracy"].tolist(), "churn_pairs": pairs[s].tolist()}
             for s in SLICES}
    if patchnet:
      both, _ = views_learned(results[name][2].params, dataset.views, config.model.rho)
      row.append(_fmt(both))
      entry["both_views_learned"] = both.tolist()
      entry["view_correlation"] = view_correlation(results[name][2].params,
                                                   dataset.views).tolist()
    lines.append("| " + " | ".join(row) + " |")
    dump["methods"][name] = entry
  lines += ["", "Difference to baseline (method - baseline, percentage points): accuracy with "
            "Welch's p, churn with a 95% bootstrap interval over runs.", "",
            "| method | slice | accuracy diff | Welch p | churn diff | churn 95% CI |",
            "|---|---|---|---|---|---|"]
  for name in values:
    if name == "baseline" or "baseline" not in values:
      continue
    cmp = compare(values["baseline"], values[name], num_resamples)
    dump["methods"][name]["vs_baseline"] = cmp
    for s in SLICES:
      c = cmp[s]
      lo, hi = c["churn_diff_ci95"]
      lines.append(f"| {name} | {s} | {100 * c['accuracy_diff']:+.1f} | "
                   f"{c['accuracy_welch_p']:.2g} | {100 * c['churn_diff']:+.1f} | "
                   f"[{100 * lo:+.1f}, {100 * hi:+.1f}] |")
  return "\n".join(lines), dump


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = FLAGS.config
  host_devices.configure(settings.cpu_device_count(config))
  try:
    validate.validate_config(config)
    if config.data.name != "multiview":
      raise ValueError(f"data.name must be 'multiview' (it has the slices), got "
                       f"{config.data.name!r}")
    dataset = data_lib.get_dataset(config.data)
    validate.validate_with_dataset(config, dataset)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  start = time.perf_counter()
  results = run_methods(config, dataset)
  table, dump = report(config, dataset, results, FLAGS.bootstrap)
  dump["wall_seconds"] = time.perf_counter() - start
  print(table)
  print(f"\ntrain + predict wall time: {dump['wall_seconds']:.0f} s, "
        f"{int(dataset.single_view_test.sum())} single-view / "
        f"{int((~dataset.single_view_test).sum())} multi-view test examples")
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(dump, f, indent=1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
