"""PNG figures with the CSV of their data beside each (matplotlib, Agg backend).

The building blocks are generic: `Series` (a line with an optional band) and `Panel` (axes
with several series) know nothing of studies, so a coefficient sweep draws churn against its
coefficient with the same `plot_panels` that draws training curves against the step.
`plot_tradeoff` and `plot_reliability` draw the two study-specific pictures.
"""

import csv
import dataclasses
import io
import os
from typing import List, Optional, Sequence

import numpy as np

from churn_jax.outputs import results_files


def _pyplot():
  import matplotlib  # Late: a study that never plots never imports matplotlib.
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  return plt


@dataclasses.dataclass
class Series:
  """A line y(x) labelled `label`; `lo`/`hi` shade a band (e.g. min..max over runs)."""
  label: str
  x: Sequence[float]
  y: Sequence[float]
  lo: Optional[Sequence[float]] = None
  hi: Optional[Sequence[float]] = None
  steps: bool = False  # A piecewise-constant value (a step-decayed learning rate).


@dataclasses.dataclass
class Panel:
  title: str
  xlabel: str
  ylabel: str
  series: List[Series]
  logy: bool = False
  logx: bool = False


def _write_csv(path: str, header: Sequence[str], rows) -> None:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  writer.writerows(rows)
  results_files.atomic_write(path, buf.getvalue())


def _save(fig, png_path: str, grow: bool = False) -> None:
  """One draw: the callers' tight_layout already fits every label and legend inside the
  figure; bbox_inches="tight" draws the figure twice, so only `grow` (something sticks out)
  takes it, to widen the image around what tight_layout could not fit."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight" if grow else None)
  _pyplot().close(fig)
  results_files.atomic_write(png_path, buf.getvalue())


def _csv_path(png_path: str) -> str:
  return os.path.splitext(png_path)[0] + ".csv"


def plot_panels(png_path: str, panels: Sequence[Panel], title: str = "") -> None:
  """Panels side by side; the CSV beside the PNG holds panel, label, x, y, lo, hi."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
  rows = []
  styles = ("-", "--", ":", "-.")
  for ax, panel in zip(axes[0], panels):
    for i, series in enumerate(panel.series):
      x, y = np.asarray(series.x, float), np.asarray(series.y, float)
      # Each series its own dash pattern, later ones thinner and on top: equal series (two
      # methods with the same coefficient) stay visible instead of hiding one another.
      (line,) = ax.plot(x, y, label=series.label, marker="." if len(x) < 30 else None,
                        linestyle=styles[i % len(styles)], linewidth=max(2.2 - 0.4 * i, 0.8),
                        drawstyle="steps-post" if series.steps else "default", zorder=2 + i)
      if series.lo is not None and series.hi is not None:
        ax.fill_between(x, np.asarray(series.lo, float), np.asarray(series.hi, float),
                        color=line.get_color(), alpha=0.2, linewidth=0)
      lo = series.lo if series.lo is not None else [None] * len(x)
      hi = series.hi if series.hi is not None else [None] * len(x)
      rows += [[panel.title, series.label, xi, yi, li, hi_] for xi, yi, li, hi_ in
               zip(x.tolist(), y.tolist(), list(lo), list(hi))]
    ax.set_title(panel.title)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if panel.logy:
      ax.set_yscale("log")
    if panel.logx:
      ax.set_xscale("log")
    ax.grid(alpha=0.3)
    if panel.series:
      ax.legend(fontsize=7)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  _save(fig, png_path)
  _write_csv(_csv_path(png_path), ["panel", "label", "x", "y", "lo", "hi"], rows)


@dataclasses.dataclass
class TradeoffPoint:
  """One method: accuracy (mean, std over runs) against churn (mean, std over pairs)."""
  label: str
  churn: float
  churn_std: float
  accuracy: float
  accuracy_std: float
  training_cost: float
  inference_cost: float


def plot_tradeoff(png_path: str, points: Sequence[TradeoffPoint], title: str = "") -> None:
  """Accuracy against churn per method (percent), error bars of one std, costs annotated."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(8.4, 4.8))
  markers = "osD^vP*Xh<>"
  for i, p in enumerate(points):
    # The legend names each point with its costs: labels beside close points would collide.
    ax.errorbar(100 * p.churn, 100 * p.accuracy, xerr=100 * p.churn_std,
                yerr=100 * p.accuracy_std, fmt=markers[i // 10 % len(markers)],
                color=plt.get_cmap("tab10")(i % 10), capsize=3,
                label=f"{p.label}: {p.training_cost:g}x train, {p.inference_cost:g}x infer")
  legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
  ax.set_xlabel("churn between runs (%), mean ± std over run pairs")
  ax.set_ylabel("test accuracy (%), mean ± std over runs")
  ax.set_title("accuracy against churn (up and left is better)" + (f"\n{title}" if title else ""))
  ax.grid(alpha=0.3)
  ax.margins(0.25)
  fig.tight_layout()
  # A legend of many sweep points can be taller or wider than the figure.
  box = legend.get_window_extent(fig.canvas.get_renderer())
  outside = box.x0 < 0 or box.y0 < 0 or box.x1 > fig.bbox.x1 or box.y1 > fig.bbox.y1
  _save(fig, png_path, grow=outside)
  _write_csv(_csv_path(png_path), [f.name for f in dataclasses.fields(TradeoffPoint)],
             [list(dataclasses.astuple(p)) for p in points])


def reliability_bins(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15):
  """Per equal-width top-1 confidence bin (lo, hi], pooled over the leading (run) axis:
  (lo, hi, count, mean confidence, accuracy); empty bins have NaN confidence and accuracy."""
  num_examples, num_classes = np.shape(probs)[-2:]
  probs = np.asarray(probs, np.float64).reshape(-1, num_classes)
  labels = np.tile(np.asarray(labels), len(probs) // num_examples)
  confidence = probs.max(-1)
  correct = probs.argmax(-1) == labels
  index = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)
  count = np.bincount(index, minlength=num_bins)
  with np.errstate(invalid="ignore"):
    conf = np.bincount(index, confidence, num_bins) / count
    acc = np.bincount(index, correct.astype(float), num_bins) / count
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  return edges[:-1], edges[1:], count, conf, acc


def plot_reliability(png_path: str, diagrams, num_bins: int = 15) -> None:
  """diagrams: [(label, probs (R, N, K), labels (N,), ece_text)]; one panel per model."""
  plt = _pyplot()
  cols = min(4, len(diagrams))
  rows_n = -(-len(diagrams) // cols)
  fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 3.2 * rows_n), squeeze=False)
  rows = []
  for ax, (label, probs, labels, note) in zip(axes.flat, diagrams):
    lo, hi, count, conf, acc = reliability_bins(probs, labels, num_bins)
    ax.bar(lo, np.nan_to_num(acc), width=hi - lo, align="edge", edgecolor="black",
           linewidth=0.5, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    ax.plot(conf, acc, "r.", markersize=4, label="(confidence, accuracy)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"{label}\n{note}", fontsize=9)
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=6, loc="upper left")
    rows += [[label, a, b, int(c), d, e] for a, b, c, d, e in
             zip(lo.tolist(), hi.tolist(), count, conf.tolist(), acc.tolist())]
  for ax in list(axes.flat)[len(diagrams):]:
    ax.axis("off")
  fig.tight_layout()
  _save(fig, png_path)
  _write_csv(_csv_path(png_path), ["model", "bin_lo", "bin_hi", "count", "confidence",
                                   "accuracy"], rows)
