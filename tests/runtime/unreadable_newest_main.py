"""launch/main.py on a host that cannot read the newest checkpoint (multihost_test.py).

Fault injection for one process of a multi-process study: every checkpointer's newest step
is unreadable here, as a read error on one host would, while the other hosts read it.
"""

import sys

from churn_jax.cli import app
from churn_jax.runtime import checkpoint

_check = checkpoint.MethodCheckpointer._unreadable  # pylint: disable=protected-access


def _unreadable_newest(self, step):
  if step == max(self._manager.all_steps()):  # pylint: disable=protected-access
    return "unreadable (injected on this host only)"
  return _check(self, step)


if __name__ == "__main__":
  checkpoint.MethodCheckpointer._unreadable = _unreadable_newest  # pylint: disable=protected-access
  sys.argv[0] = "launch/main.py"
  app.run()
