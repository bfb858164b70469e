"""TensorBoard event files: WORKDIR/tensorboard/<method>/run<r> and <method>/pairs.

Written with tensorboardX: clu's metric_writers (clu 0.0.12) installs beside the pinned jax,
but its event writer needs TensorFlow (an optional 1.45 GB extra here) or torch. Each run of a
method gets its own directory, so TensorBoard overlays the runs; scalars summarised over run
pairs (churn) go to `pairs`. `read_scalars` reads the events back without TensorFlow.
"""

import glob
import os
import shutil
import struct
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

DIRNAME = "tensorboard"


class MethodWriter:
  """Scalar writers for one method: one per run and one for pair summaries.

  `purge_step` (the first step this process logs, after a resume) makes TensorBoard drop
  events at or after it that an interrupted process wrote, so curves never double back.
  `fresh` deletes the method's earlier event files instead (the observer then replays its
  curves file: nothing an interrupted writer buffered or tore survives in two versions).
  """

  def __init__(self, workdir: str, method: str, run_ids: Sequence[int],
               purge_step: Optional[int] = None, fresh: bool = False):
    from tensorboardX import SummaryWriter  # Imported late: only studies that log need it.
    root = os.path.join(workdir, DIRNAME, method)
    if fresh and os.path.isdir(root):
      shutil.rmtree(root)
    self.run_ids = list(run_ids)
    self._runs = [SummaryWriter(os.path.join(root, f"run{r}"), purge_step=purge_step,
                                flush_secs=30) for r in self.run_ids]
    self._pairs = SummaryWriter(os.path.join(root, "pairs"), purge_step=purge_step,
                                flush_secs=30)

  def per_run(self, step: int, scalars: Mapping[str, np.ndarray]) -> None:
    """scalars: name -> (R,) values, or a scalar shared by every run (a constant coefficient)."""
    for name, values in scalars.items():
      values = np.broadcast_to(np.asarray(values, np.float64), (len(self.run_ids),))
      for writer, value in zip(self._runs, values):
        writer.add_scalar(name, float(value), int(step))

  def pairs(self, step: int, scalars: Mapping[str, float]) -> None:
    for name, value in scalars.items():
      self._pairs.add_scalar(name, float(value), int(step))

  def close(self) -> None:
    for writer in self._runs + [self._pairs]:
      writer.close()


def _records(path: str):
  """The payloads of a TFRecord file (length, masked crc, data, masked crc)."""
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return
      (length,) = struct.unpack("<Q", header[:8])
      data = f.read(length)
      f.read(4)
      if len(data) < length:
        return  # A torn last record of a killed writer.
      yield data


def read_scalars(logdir: str) -> Dict[str, List[Tuple[int, float]]]:
  """tag -> [(step, value)] of every event file in `logdir`, in write order.

  A SessionLog START with a step (tensorboardX's purge_step) drops the earlier events at or
  after that step, as TensorBoard does.
  """
  from tensorboardX.proto import event_pb2
  out: Dict[str, List[Tuple[int, float]]] = {}
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    for data in _records(path):
      event = event_pb2.Event.FromString(data)
      if event.HasField("session_log") and event.session_log.status == 1 and event.step:
        out = {tag: [(s, v) for s, v in vals if s < event.step] for tag, vals in out.items()}
      for value in event.summary.value:
        if value.HasField("simple_value"):
          out.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
  return out
