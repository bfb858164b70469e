"""A second Ctrl-C ends the study at once, and nothing but the command line's line is printed."""

import logging
import signal
import threading

from absl.testing import absltest

from churn_jax.runtime import preemption


class DoubleInterruptTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    hook = threading.excepthook
    self.addCleanup(setattr, threading, "excepthook", hook)
    self.addCleanup(logging.disable, logging.NOTSET)

  def test_first_sigint_only_asks_the_second_interrupts_and_silences(self):
    watcher = preemption.Watcher()
    watcher._handle(signal.SIGINT, None)  # pylint: disable=protected-access
    self.assertEqual(watcher.signum, signal.SIGINT)
    self.assertTrue(logging.getLogger("absl").isEnabledFor(logging.ERROR))
    with self.assertRaises(KeyboardInterrupt):
      watcher._handle(signal.SIGINT, None)  # pylint: disable=protected-access
    # orbax logs through logging and its save threads die with the interrupt: both silent.
    self.assertFalse(logging.getLogger("absl").isEnabledFor(logging.CRITICAL))
    printed = []
    thread = threading.Thread(target=lambda: 1 / 0)
    import sys  # pylint: disable=g-import-not-at-top
    stderr, sys.stderr = sys.stderr, type("W", (), {"write": printed.append,
                                                    "flush": lambda self: None})()
    try:
      thread.start()
      thread.join()
    finally:
      sys.stderr = stderr
    self.assertEqual("".join(printed), "")

  def test_sigterm_after_sigint_is_not_an_interrupt(self):
    watcher = preemption.Watcher()
    watcher._handle(signal.SIGINT, None)  # pylint: disable=protected-access
    watcher._handle(signal.SIGTERM, None)  # pylint: disable=protected-access
    self.assertEqual(watcher.signum, signal.SIGINT)
    self.assertTrue(logging.getLogger("absl").isEnabledFor(logging.ERROR))


if __name__ == "__main__":
  absltest.main()
