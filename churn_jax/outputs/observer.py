"""What the trainer reports while a method trains: step metrics, evals during training, results.

`train.train_method` calls `on_log(step, metrics)` at its log steps and, with
`config.eval_every_steps > 0`, `on_eval(step, member_probs, labels)` every that many steps;
`train_and_evaluate` calls `on_results(entry)` once the method's summary exists. The observer
writes TensorBoard scalars and WORKDIR/curves/<method>.jsonl (the data of the training-curve
plots); on a multi-host slice only process 0 writes.
"""

import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from etils import epath
import jax
import numpy as np

from churn_jax import metrics
from churn_jax.core import schedules
from churn_jax.outputs import tables, tensorboard

CURVES_DIRNAME = "curves"


def learning_rate_fn(lr_cfg):
  """The host-side learning-rate schedule of the study (the optimizer's, step.make_optimizer),
  from its `lr` settings (config.lr)."""
  return schedules.warmup_step_decay(lr_cfg.base, lr_cfg.get("warmup_steps", 0),
                                     tuple(lr_cfg.get("decay_steps", ())),
                                     lr_cfg.get("decay_factor", 0.1))


class _RewrittenObject:
  """A file-like append target on gs://: the text is kept and the whole object uploaded on
  flush (log steps are far apart; one upload is atomic)."""

  def __init__(self, path: str, text: str):
    self.path, self.text = path, text
    self.flush()

  def write(self, text: str) -> None:
    self.text += text

  def flush(self) -> None:
    epath.Path(self.path).write_text(self.text)

  def close(self) -> None:
    self.flush()


def curves_path(workdir: str, method: str) -> str:
  return os.path.join(workdir, CURVES_DIRNAME, f"{method}.jsonl")


def read_curves(path: str) -> list:
  """The records of a curves file, one per (step, kind); a later record of the same step and
  kind (written after a resume) replaces the earlier one."""
  records = {}
  with epath.Path(path).open() as f:  # Local or gs://.
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
      except ValueError:
        continue  # A torn last line of a killed process.
      records[(record["kind"], record["step"])] = record
  return sorted(records.values(), key=lambda r: (r["step"], r["kind"]))


def _scalars(values: Mapping[str, Any], num_runs: int) -> Dict[str, list]:
  """name -> per-run list of every scalar (per run or shared) metric; others are skipped."""
  out = {}
  for name, value in values.items():
    value = np.asarray(value)
    if value.ndim == 0 or value.shape == (num_runs,):
      if np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_:
        out[name] = np.broadcast_to(value.astype(np.float64), (num_runs,)).tolist()
  return out


class MethodObserver:
  """Step metrics, evals and final metrics of one method -> TensorBoard and curves."""

  def __init__(self, workdir: str, method, run_ids: Sequence[int], lr_fn):
    """lr_fn: step -> learning rate (learning_rate_fn). The trainer decides when to call
    on_eval (config.eval_every_steps)."""
    self.workdir = workdir
    self.method = method
    self.run_ids = list(run_ids)
    self._lr = lr_fn
    self._writes = jax.process_index() == 0
    self._tb = None
    self._curves = None

  def _open(self, first_step: int, purge: bool = True) -> None:
    """Opens the writers; with `purge`, curve records at or after `first_step` (from a
    process that was interrupted) are superseded.

    The curves file is flushed record by record, TensorBoard's events are not (a kill -9
    loses the buffered ones and tears the last), so TensorBoard is rewritten from the kept
    curve records: after any interruption or checkpoint fallback it holds every step once.
    """
    if self._curves is not None or not self._writes:
      return
    path = curves_path(self.workdir, self.method.name)
    epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
    kept = [r for r in read_curves(path) if r["step"] < first_step or not purge] \
        if epath.Path(path).exists() else []
    text = "".join(json.dumps(r) + "\n" for r in kept)
    if "://" in path:  # An object store cannot append: the object is rewritten per record.
      # No TensorBoard events there (tensorboardX appends to local files only); the curves
      # object holds the same records and `churn-jax report` plots them.
      self._curves = _RewrittenObject(path, text)
      return
    with open(path, "w") as f:  # Rewritten once per process; appended to afterwards.
      f.write(text)
    self._curves = open(path, "a")
    self._tb = tensorboard.MethodWriter(self.workdir, self.method.name, self.run_ids,
                                        fresh=True)
    for record in kept:
      self._write_tb(record)

  def _write_tb(self, record: Dict[str, Any]) -> None:
    """A curves record as TensorBoard scalars (the same tags whether live or replayed)."""
    if self._tb is None:  # A gs:// workdir (see _open).
      return
    step = record["step"]
    if record["kind"] == "train":
      self._tb.per_run(step, {f"train/{k}" if "/" not in k else k: v
                              for k, v in record["runs"].items()})
    else:
      self._tb.per_run(step, {f"eval/{k}": v for k, v in record["runs"].items()})
      self._tb.pairs(step, {f"eval/{k}": float(np.mean(v))
                            for k, v in record["pairs"].items()})

  def _record(self, record: Dict[str, Any]) -> None:
    self._curves.write(json.dumps(record) + "\n")
    self._curves.flush()

  def on_log(self, step: int, step_metrics: Mapping[str, Any]) -> None:
    """step_metrics: the train step's metrics, (R,) arrays or shared scalars."""
    if not self._writes:
      return
    self._open(step)
    runs = _scalars(step_metrics, len(self.run_ids))
    # The update of step t (1-based) used the schedule's value at t - 1 (optax counts updates).
    runs["learning_rate"] = [float(self._lr(step - 1))] * len(self.run_ids)
    record = {"kind": "train", "step": int(step), "runs": runs}
    self._write_tb(record)
    self._record(record)

  def on_throughput(self, step: int, perf: Mapping[str, float]) -> None:
    """Stack-wide throughput (engine/throughput.py) to TensorBoard only: wall-clock numbers
    stay out of the curves file, which reruns reproduce."""
    if not self._writes or not perf:
      return
    self._open(step)
    if self._tb is not None:
      self._tb.pairs(step, {f"perf/{k}": v for k, v in perf.items()})

  def on_eval(self, step: int, member_probs: np.ndarray, labels: np.ndarray) -> None:
    """Test metrics of the deployed models during training, churn between runs included."""
    if not self._writes:
      return
    self._open(step)
    deployed = np.asarray(self.method.deployed_probs(member_probs), np.float32)
    runs = {"accuracy": metrics.per_run(metrics.accuracy, deployed, labels)["values"],
            "nll": metrics.per_run(metrics.negative_log_likelihood, deployed, labels)["values"]}
    pairs = {"churn": metrics.pairwise(metrics.churn, deployed)["values"]}
    record = {"kind": "eval", "step": int(step), "runs": runs, "pairs": pairs}
    self._write_tb(record)
    self._record(record)

  def on_results(self, step: int, entry: Mapping[str, Any]) -> None:
    """The method's final metrics (results.json entry) as scalars at the last step; closes."""
    if self._writes:
      self._open(step, purge=False)
      per_run, pair_means = {}, {}
      for key, value in entry.items():
        if not isinstance(value, dict) or "values" not in value:
          continue
        values = value["values"]
        if len(values) == len(self.run_ids) and key not in tables.PAIRWISE:
          per_run[f"final/{key}"] = [np.nan if v is None else v for v in values]
        elif value.get("mean") is not None:
          pair_means[f"final/{key}"] = value["mean"]
      if self._tb is not None:
        self._tb.per_run(step, per_run)
        self._tb.pairs(step, pair_means)
    self.close()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._curves is not None:
      self._curves.close()
    self._tb = self._curves = None

