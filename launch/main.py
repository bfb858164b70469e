"""Command line entry point: parses flags and calls churn_jax.train.train_and_evaluate.

  python launch/main.py --config=experiments/mnist1d.py --workdir=/tmp/mnist1d \
      --config.methods=baseline,codistill --config.num_runs=5
"""

import logging as std_logging
import os
import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from churn_jax import distributed, report, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/*.py), optionally with ':args'.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  distributed.maybe_initialize()  # Multi-host TPU slices only; a no-op elsewhere.
  logging.set_verbosity(logging.INFO)
  # Orbax logs every file transfer at INFO; keep its warnings, drop the chatter.
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno >= std_logging.WARNING or "/orbax/" not in r.pathname)
  try:
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, FloatingPointError, FileNotFoundError) as e:
    # Bad input or a diverged run: one clear line, non-zero exit, nothing else to read.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except jax.errors.JaxRuntimeError as e:  # A peer process died, or a device failed.
    print(f"error: {str(e).splitlines()[0][:500]}", file=sys.stderr, flush=True)
    os._exit(1)  # Exit handlers would wait for the lost peer at jax's shutdown barrier.
  print(report.format_table(results))
  print(f"results written to {_WORKDIR.value}/results.{{json,csv,md}}")


if __name__ == "__main__":
  app.run(main)
