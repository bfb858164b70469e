"""A background thread that produces the items of an iterator ahead of their consumer.

Gathering the next batches overlaps with the training step on the current ones
(runtime/distributed.prefetch_to_device builds on it).
"""

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")


class _Raised:
  """Carries an exception from the producer thread to the consumer."""

  def __init__(self, error: BaseException):
    self.error = error


_DONE = object()  # The producer's end-of-stream marker.


def prefetch(iterator: Iterator[T], size: int = 2) -> Iterator[T]:
  """Yields the items of `iterator`, producing up to `size` ahead in a thread.

  Gathering the next batch overlaps with the training step on the current
  one. An exception raised by `iterator` is re-raised in the consumer at the
  point the failing item would have been yielded. Closing the returned
  generator (or dropping it) stops the thread after at most one more item.
  """
  size = int(size)
  if size < 1:
    raise ValueError(f"prefetch size must be >= 1, got {size}")
  buffer: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()

  def put(item) -> bool:
    # Poll so that a consumer that went away cannot leave us blocked.
    while not stop.is_set():
      try:
        buffer.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def produce() -> None:
    try:
      for item in iterator:
        if not put(item):
          return
    except BaseException as e:  # pylint: disable=broad-except
      put(_Raised(e))
      return
    put(_DONE)

  thread = threading.Thread(target=produce, name="prefetch", daemon=True)
  return _consume(buffer, stop, thread)


def _consume(buffer: queue.Queue, stop: threading.Event,
             thread: threading.Thread) -> Iterator:
  thread.start()
  try:
    while True:
      item = buffer.get()
      if item is _DONE:
        return
      if isinstance(item, _Raised):
        raise item.error
      yield item
  finally:
    stop.set()
    thread.join()
