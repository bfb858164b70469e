"""Table 1 as one command: churn when runs differ in nothing, init only, data order only, both.

  python launch/table1.py --config=experiments/mnist1d.py --workdir=/tmp/table1
  # On GPU, the paper's deterministic column (XLA:CPU ignores the flag):
  python launch/table1.py --config=experiments/mnist1d.py --workdir=/tmp/table1_det \
      --deterministic_ops

Writes <workdir>/table1.{md,csv} (and each row's study in <workdir>/<vary>/).
"""

import os
import shlex
import sys
import time

from absl import flags, logging

from churn_jax.cli import app, script  # app: --config (a config file, --config.KEY=V), --workdir
from churn_jax.runtime import workdir_lock
from churn_jax.study import config_checks

_CONFIG, _WORKDIR = app.CONFIG, app.WORKDIR
_DETERMINISTIC = app.DETERMINISTIC  # --deterministic_ops, shared with launch/main.py.
_METHOD = flags.DEFINE_string("method", "baseline", "The method config trained in every row.")


def main(argv):
  del argv  # app.parse refused extra arguments.
  # Everything that needs neither JAX nor data is checked first: one line, nothing written.
  workdir_lock.check_workdir(_WORKDIR.value)
  config_checks.check_values(_CONFIG.value)
  if _METHOD.value not in _CONFIG.value.method_configs:
    raise script.UsageError(f"--method: unknown method {_METHOD.value!r}; configured: "
                            f"{', '.join(sorted(_CONFIG.value.method_configs))}")
  from churn_jax.study import table1  # pylint: disable=g-import-not-at-top
  if _DETERMINISTIC.value:  # Before anything initialises a JAX backend.
    os.environ["XLA_FLAGS"] = table1.deterministic_xla_flags(os.environ.get("XLA_FLAGS", ""))
  from churn_jax.runtime import distributed  # pylint: disable=g-import-not-at-top
  distributed.maybe_initialize()  # Before anything touches a JAX backend (errors: script.run).
  import jax  # pylint: disable=g-import-not-at-top
  from churn_jax.outputs import results_files  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import sweep  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  start = time.perf_counter()
  rows = table1.run_table1(_CONFIG.value, _WORKDIR.value, method=_METHOD.value)
  seconds = time.perf_counter() - start
  command = "python launch/table1.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  text = (f"# Table 1: sources of churn ({_METHOD.value})\n\nCommand: `{command}`\n\n"
          f"Wall time {seconds:.0f} s on {sweep.machine()}; backend {jax.default_backend()}, "
          f"XLA deterministic ops {'on' if table1.deterministic_ops_enabled() else 'off'}.\n\n"
          + table1.markdown(rows))
  if jax.process_index() == 0:  # One writer on a multi-host slice.
    results_files.atomic_write(os.path.join(_WORKDIR.value, "table1.md"), text)
    results_files.atomic_write(os.path.join(_WORKDIR.value, "table1.csv"),
                               table1.csv_text(rows))
  print(text)


if __name__ == "__main__":
  script.run(main, __doc__, parse_fn=app.parse, modules=[app.__name__])
