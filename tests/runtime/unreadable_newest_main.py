"""launch/main.py on a host that cannot read the newest checkpoint (multihost_test.py).

Fault injection for one process of a multi-process study: the newest step of every
checkpoint directory is unreadable here, as after a read error on this host only.
"""

import sys

from churn_jax.cli import app
from churn_jax.runtime import checkpoint

_check = checkpoint.MethodCheckpointer._unreadable  # pylint: disable=protected-access


_injected = set()


def _unreadable_newest(self, step):
  """The first step asked about per checkpoint directory (the newest) is unreadable."""
  if self.directory not in _injected:
    _injected.add(self.directory)
    return "unreadable (injected on this host only)"
  return _check(self, step)


if __name__ == "__main__":
  checkpoint.MethodCheckpointer._unreadable = _unreadable_newest  # pylint: disable=protected-access
  sys.argv[0] = "launch/main.py"
  app.run()
