"""`churn-jax compare A B`: how much two models' predictions disagree, from files of any origin.

An input is a study's predictions file (WORKDIR/predictions/<method>.npz, one run picked by
`run`), a study workdir (with `method`), or a plain .npy/.npz/.csv holding probabilities
(N, K), logits (N, K) (with `logits=True`) or predicted classes (N,). Nothing here needs the
models, so predictions from any framework compare the same way.

Uncertainty: the churn (and the accuracy difference) get a paired-bootstrap 95% interval over
examples: both models are resampled on the same examples. These statistics depend only on the
counts of example types (agree/disagree; A right/B right), so a bootstrap resample is exactly
a multinomial draw of those counts, drawn directly instead of by indexing N examples B times.
"""

import dataclasses
import os
import zipfile
from typing import Any, Dict, List, Optional

import numpy as np

from churn_jax import metrics
from churn_jax.outputs import predictions

_ROW_SUM_TOL = 1e-3  # As churn_jax.metrics: float32 softmax rows miss 1 by ~1e-7.


class CompareError(ValueError):
  """Bad input: reported as one line, exit status 1."""


@dataclasses.dataclass
class Model:
  """One side of a comparison."""
  source: str
  classes: np.ndarray                 # (N,) predicted class
  probs: Optional[np.ndarray] = None  # (N, K) probabilities, None for class-only input
  labels: Optional[np.ndarray] = None
  example_ids: Optional[np.ndarray] = None
  num_classes: Optional[int] = None


def _read_array(path: str, side: str) -> np.ndarray:
  ext = os.path.splitext(path)[1].lower()
  try:
    if ext == ".npy":
      return np.load(path, allow_pickle=False)
    if ext == ".npz":
      with np.load(path, allow_pickle=False) as f:
        if len(f.files) == 1:
          return f[f.files[0]]
        for key in ("probs", "probabilities", "logits", "predictions", "classes"):
          if key in f.files:
            return f[key]
        raise CompareError(f"{side}: {path} holds arrays {', '.join(f.files)}; expected one "
                           f"array or one named probs, logits or classes")
    if ext in (".csv", ".txt"):
      try:
        return np.loadtxt(path, delimiter="," if ext == ".csv" else None, ndmin=1)
      except ValueError:  # A header row.
        return np.loadtxt(path, delimiter="," if ext == ".csv" else None, ndmin=1, skiprows=1)
  except CompareError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    first = (str(e).splitlines() or [type(e).__name__])[0] or type(e).__name__
    raise CompareError(f"{side}: cannot read {path}: {first}") from None
  raise CompareError(f"{side}: {path}: unknown file type {ext or '(none)'}; use .npy, .npz, "
                     f".csv or a study workdir")


def _softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _classes_from(array: np.ndarray, side: str) -> np.ndarray:
  if not np.all(np.equal(np.mod(array, 1), 0)) or (array.size and array.min() < 0):
    raise CompareError(f"{side}: a 1-D input must hold predicted classes (integers >= 0)")
  return array.astype(np.int64)


def model_from_array(array: np.ndarray, side: str, logits: bool = False) -> Model:
  """A plain array: probabilities or logits (N, K), or predicted classes (N,)."""
  array = np.asarray(array)
  if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
    raise CompareError(f"{side}: expected numbers, got dtype {array.dtype}")
  array = array.astype(np.float64)
  if array.ndim == 2 and array.shape[1] == 1:
    array = array[:, 0]
  if array.size == 0:
    raise CompareError(f"{side}: no examples")
  if not np.all(np.isfinite(array)):
    raise CompareError(f"{side}: contains NaN or infinite values "
                       f"({int((~np.isfinite(array)).sum())} entries)")
  if array.ndim == 1:
    return Model(side, _classes_from(array, side))
  if array.ndim != 2:
    raise CompareError(f"{side}: expected (N, K) probabilities or logits or (N,) classes, got "
                       f"shape {array.shape}")
  if logits:
    if np.all((array >= 0) & (array <= 1)) and np.all(np.abs(array.sum(1) - 1) <= _ROW_SUM_TOL):
      raise CompareError(f"{side}: --logits given, but every row is already a probability "
                         f"vector (entries in [0, 1] summing to 1); drop --logits")
    probs = _softmax(array)
  else:
    sums = array.sum(1)
    bad = np.flatnonzero((array < 0).any(1) | (np.abs(sums - 1) > _ROW_SUM_TOL))
    if len(bad):
      raise CompareError(f"{side}: rows are not probabilities ({len(bad)} of {len(array)}; row "
                         f"{bad[0]} sums to {sums[bad[0]]:.4g}, min {array[bad[0]].min():.4g}); "
                         f"pass --logits if they are logits")
    probs = array
  return Model(side, probs.argmax(1), probs=probs, num_classes=array.shape[1])


def load_model(path: str, side: str, method: Optional[str] = None, run: int = 0,
               logits: bool = False) -> Model:
  """Reads one side of the comparison (a workdir, a study predictions file or a plain file)."""
  if not os.path.exists(path):
    raise CompareError(f"{side}: {path} does not exist")
  if os.path.isdir(path):
    pred_dir = os.path.join(path, predictions.DIRNAME)
    names = sorted(f[:-4] for f in os.listdir(pred_dir) if f.endswith(".npz")) \
        if os.path.isdir(pred_dir) else []
    if not names:
      raise CompareError(f"{side}: {path} is a directory without predictions/*.npz")
    if method is None and len(names) > 1:
      raise CompareError(f"{side}: {path} holds several methods ({', '.join(names)}); pass "
                         f"--method")
    method = method or names[0]
    if method not in names:
      raise CompareError(f"{side}: no method {method!r} in {path}; found {', '.join(names)}")
    path = os.path.join(pred_dir, f"{method}.npz")
  if path.endswith(".npz"):
    is_study = "deployed" in _npz_files(path, side)
    if is_study:
      pred = predictions.load(path)
      runs = [int(r) for r in pred["run_ids"]]  # Not np.int64(0) in messages.
      if run not in runs:
        raise CompareError(f"{side}: run {run} is not in {path} (runs {runs})")
      model = model_from_array(pred["deployed"][runs.index(run)], side)
      model.source = f"{path} (run {run})"
      model.labels = pred["labels"].astype(np.int64)
      model.example_ids = pred["example_ids"]
      return model
  model = model_from_array(_read_array(path, side), side, logits)
  model.source = path
  return model


def _npz_files(path: str, side: str) -> list:
  """The array names of an npz; CompareError (one line) for an empty or non-zip file."""
  try:
    with np.load(path, allow_pickle=False) as f:
      if not hasattr(f, "files"):
        raise ValueError("a .npy array, not an .npz archive")
      return list(f.files)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    first = (str(e).splitlines() or [""])[0] or type(e).__name__
    raise CompareError(f"{side}: cannot read {path} as .npz: {first}") from None


def load_labels(path: str) -> np.ndarray:
  """(N,) integer labels from .npy/.csv/.txt, or .npz (one array, or one named labels)."""
  if not os.path.exists(path):
    raise CompareError(f"labels: {path} does not exist")
  if path.endswith(".npz"):
    _npz_files(path, "labels")  # One line for a file that is no npz.
    with np.load(path, allow_pickle=False) as f:
      key = "labels" if "labels" in f.files else (f.files[0] if len(f.files) == 1 else None)
      if key is None:
        raise CompareError(f"labels: {path} holds several arrays and none named labels")
      array = f[key]
  else:
    array = _read_array(path, "labels")
  array = np.asarray(array, np.float64)
  if array.ndim == 2 and array.shape[1] == 1:
    array = array[:, 0]
  if array.ndim != 1:
    raise CompareError(f"labels: expected shape (N,), got {array.shape}")
  if array.size == 0:
    raise CompareError(f"labels: {path} holds no labels")
  if not np.all(np.isfinite(array)):
    raise CompareError("labels: contains NaN or infinite values")
  return _classes_from(array, "labels")


def _check(a: Model, b: Model, labels: Optional[np.ndarray]) -> int:
  """Checks that A, B and the labels describe the same examples; returns K."""
  if len(a.classes) != len(b.classes):
    raise CompareError(f"A has {len(a.classes)} examples but B has {len(b.classes)}")
  if a.num_classes and b.num_classes and a.num_classes != b.num_classes:
    raise CompareError(f"A has {a.num_classes} classes but B has {b.num_classes}")
  k = a.num_classes or b.num_classes
  for m in (a, b):
    if k and m.classes.max() >= k:
      raise CompareError(f"{m.source}: predicted class {m.classes.max()} is out of range for "
                         f"{k} classes")
  if a.example_ids is not None and b.example_ids is not None and \
      not np.array_equal(a.example_ids, b.example_ids):
    raise CompareError("A and B hold different examples (their example ids differ)")
  if labels is not None:
    if len(labels) != len(a.classes):
      raise CompareError(f"labels have {len(labels)} entries but A and B have "
                         f"{len(a.classes)} examples")
    if k and labels.max() >= k:
      raise CompareError(f"labels: value {labels.max()} is out of range for {k} classes")
  k = int(k or max(a.classes.max(), b.classes.max(),
                   -1 if labels is None else labels.max()) + 1)
  if k < 2:
    raise CompareError(f"A and B hold {k} class; churn needs at least 2 classes")
  return k


def _bootstrap(cell_counts: np.ndarray, statistic, num: int, seed: int):
  """95% percentile interval of statistic(counts / N) over multinomial resamples."""
  n = int(cell_counts.sum())
  draws = np.random.default_rng(seed).multinomial(n, cell_counts / n, size=num) / n
  values = statistic(draws)
  return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def compare(a: Model, b: Model, labels: Optional[np.ndarray] = None, alpha: float = 1.0,
            top: int = 10, bootstrap: int = 1000, seed: int = 0) -> Dict[str, Any]:
  """Every statistic of the comparison as a JSON-ready dict (fractions, not percent)."""
  if labels is None:
    if a.labels is not None and b.labels is not None and not np.array_equal(a.labels, b.labels):
      raise CompareError("A and B carry different labels; pass --labels")
    labels = a.labels if a.labels is not None else b.labels
  k = _check(a, b, labels)
  n = len(a.classes)
  differ = a.classes != b.classes
  flips = int(differ.sum())
  out: Dict[str, Any] = {"a": a.source, "b": b.source, "num_examples": n, "num_classes": k,
                         "flips": flips, "churn": flips / n}
  out["churn_ci95"] = _bootstrap(np.array([flips, n - flips]), lambda d: d[:, 0], bootstrap,
                                 seed)
  both = a.probs is not None and b.probs is not None
  out["schurn"] = float(metrics.surrogate_churn(a.probs, b.probs, alpha)) if both else None
  out["schurn_alpha"] = alpha
  diff = metrics.prediction_difference(a.probs, b.probs) if both else {}
  for key in ("l1", "l2", "relative"):
    out[f"pred_diff_{key}"] = float(diff[key]) if both else None
  if labels is not None:
    right_a, right_b = a.classes == labels, b.classes == labels
    out["accuracy_a"] = float(right_a.mean())
    out["accuracy_b"] = float(right_b.mean())
    out["accuracy_b_minus_a"] = out["accuracy_b"] - out["accuracy_a"]
    cells = np.array([np.sum(right_a & right_b), np.sum(right_a & ~right_b),
                      np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)])
    out["accuracy_b_minus_a_ci95"] = _bootstrap(cells, lambda d: d[:, 2] - d[:, 1], bootstrap,
                                                seed)
    for key, mask_a, mask_b in (("correct", right_a, right_b),
                                ("incorrect", ~right_a, ~right_b)):
      rates = [differ[m].mean() for m in (mask_a, mask_b) if m.any()]
      out[f"churn_{key}"] = float(np.mean(rates)) if rates else None
  by = labels if labels is not None else a.classes
  out["per_class_by"] = "true class" if labels is not None else "class under A"
  out["per_class"] = [{"class": c, "examples": int((by == c).sum()),
                       "churn": float(differ[by == c].mean()) if (by == c).any() else None}
                      for c in range(k)]
  matrix = np.zeros((k, k), np.int64)
  np.add.at(matrix, (a.classes[differ], b.classes[differ]), 1)
  order = np.argsort(-matrix, axis=None, kind="stable")[:top]
  out["flip_matrix_top"] = [
      {"class_a": int(i), "class_b": int(j), "count": int(matrix[i, j]),
       "share_of_flips": matrix[i, j] / flips}
      for i, j in zip(*np.unravel_index(order, matrix.shape)) if matrix[i, j] > 0]
  out["most_confident_flips"] = _confident_flips(a, b, labels, differ, top)
  return out


def _confident_flips(a, b, labels, differ, top) -> List[Dict[str, Any]]:
  """Flipped examples where both models are most sure (largest min of the two confidences)."""
  idx = np.flatnonzero(differ)
  ids = a.example_ids if a.example_ids is not None else (
      b.example_ids if b.example_ids is not None else np.arange(len(differ)))
  conf_a = a.probs[idx, a.classes[idx]] if a.probs is not None else None
  conf_b = b.probs[idx, b.classes[idx]] if b.probs is not None else None
  key = [c for c in (conf_a, conf_b) if c is not None]
  if key:
    idx_order = np.argsort(-np.minimum.reduce(key), kind="stable")[:top]
  else:
    idx_order = np.arange(min(top, len(idx)))
  rows = []
  for i in idx_order:
    n = idx[i]
    rows.append({"example": int(ids[n]),
                 "label": None if labels is None else int(labels[n]),
                 "class_a": int(a.classes[n]),
                 "confidence_a": None if conf_a is None else float(conf_a[i]),
                 "class_b": int(b.classes[n]),
                 "confidence_b": None if conf_b is None else float(conf_b[i])})
  return rows


# ---- output formats ---------------------------------------------------------------------

def _pct(x) -> str:
  return "n/a" if x is None else f"{100 * x:.2f}%"


def _points(x) -> str:
  return f"{100 * x:+.2f} points"


def _num(x) -> str:
  return "n/a" if x is None else f"{x:.4f}"


def format_markdown(r: Dict[str, Any]) -> str:
  lo, hi = r["churn_ci95"]
  lines = [f"A: {r['a']}", f"B: {r['b']}",
           f"{r['num_examples']} examples, {r['num_classes']} classes, {r['flips']} flips", "",
           "| metric | value |", "|---|---|",
           f"| churn | {_pct(r['churn'])} (95% CI {_pct(lo)} to {_pct(hi)}, paired bootstrap) |",
           f"| SChurn (alpha {r['schurn_alpha']:g}) | {_num(r['schurn'])} |"]
  if "accuracy_a" in r:
    dlo, dhi = r["accuracy_b_minus_a_ci95"]
    lines += [f"| accuracy A | {_pct(r['accuracy_a'])} |",
              f"| accuracy B | {_pct(r['accuracy_b'])} |",
              f"| accuracy B - A | {_points(r['accuracy_b_minus_a'])} (95% CI "
              f"{_points(dlo)} to {_points(dhi)}, paired bootstrap) |",
              f"| churn on correct | {_pct(r['churn_correct'])} |",
              f"| churn on incorrect | {_pct(r['churn_incorrect'])} |"]
  lines += [f"| pred diff L1 | {_num(r['pred_diff_l1'])} |",
            f"| pred diff L2 | {_num(r['pred_diff_l2'])} |",
            f"| pred diff relative | {_num(r['pred_diff_relative'])} |", "",
            f"churn per {r['per_class_by']}:", "", "| class | examples | churn |", "|---|---|---|"]
  lines += [f"| {c['class']} | {c['examples']} | {_pct(c['churn'])} |" for c in r["per_class"]]
  lines += ["", "largest flips (class under A -> class under B):", "",
            "| A | B | count | share of flips |", "|---|---|---|---|"]
  lines += [f"| {f['class_a']} | {f['class_b']} | {f['count']} | {_pct(f['share_of_flips'])} |"
            for f in r["flip_matrix_top"]]
  lines += ["", "most confident flips:", "",
            "| example | label | A class | A confidence | B class | B confidence |",
            "|---|---|---|---|---|---|"]
  lines += [f"| {f['example']} | {'n/a' if f['label'] is None else f['label']} | {f['class_a']} "
            f"| {_num(f['confidence_a'])} | {f['class_b']} | {_num(f['confidence_b'])} |"
            for f in r["most_confident_flips"]]
  return "\n".join(lines) + "\n"


def format_csv(r: Dict[str, Any]) -> str:
  """Long format: section, row, column, value (fractions, not percent)."""
  import csv
  import io
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(["section", "row", "column", "value"])
  for key, value in r.items():
    if isinstance(value, list) and value and isinstance(value[0], dict):
      for i, row in enumerate(value):
        for column, cell in row.items():
          writer.writerow([key, i, column, "n/a" if cell is None else cell])
    elif isinstance(value, (list, tuple)):
      writer.writerow(["summary", key, "low", value[0]])
      writer.writerow(["summary", key, "high", value[1]])
    else:
      writer.writerow(["summary", key, "value", "n/a" if value is None else value])
  return buf.getvalue()
