"""The `churn-jax` console command: train, compare, report.

  churn-jax train --config=experiments/mnist1d.py:quick --workdir=runs/q
  churn-jax compare A B [--labels FILE] [--logits] [--format md|json|csv]
  churn-jax report WORKDIR [--against METHOD,...]
  churn-jax docs [--write] [--source WORKDIR=DIR] [FILE.md ...]   (churn_jax/cli/docs_tables.py)
  churn-jax --version

Bad input is one line on stderr and exit status 1; nothing is written.
"""

import argparse
import glob
import json
import math
import sys
from typing import Optional, Sequence

USAGE = "churn-jax {train,compare,report,docs} ... (churn-jax SUBCOMMAND --help for its arguments)"


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # One line, exit 1 (argparse's default is usage + exit 2).
    print(f"error: {self.prog}: {message}", file=sys.stderr)
    sys.exit(1)


def _fail(message: str) -> int:
  print(f"error: {message}", file=sys.stderr)
  return 1


def train(argv: Sequence[str]) -> int:
  """Runs a study: churn_jax.cli.app.run when present, else the launcher's absl flags and main."""
  try:
    from churn_jax.cli import app  # pylint: disable=import-outside-toplevel
  except ImportError:
    app = None
  if app is not None:
    return app.run(["churn-jax train", *argv], program="churn-jax train") or 0
  return _train_with_absl(["churn-jax train", *argv])


def _train_with_absl(argv) -> int:
  """What launch/main.py does, importable from the installed package."""
  import logging as std_logging
  from absl import app as absl_app, flags, logging
  from ml_collections import config_flags
  from churn_jax.runtime import distributed
  from churn_jax.outputs import results_files
  from churn_jax.study import train as train_lib

  config = config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (experiments/*.py), optionally with ':args'.",
      lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, "Directory for results and checkpoints.")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(args):
    if len(args) > 1:
      raise absl_app.UsageError(f"unexpected arguments: {' '.join(args[1:])}")
    distributed.maybe_initialize()
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(
        lambda r: r.levelno >= std_logging.WARNING or "/orbax/" not in r.pathname)
    try:
      results = train_lib.train_and_evaluate(config.value, workdir.value)
    except (ValueError, FloatingPointError, FileNotFoundError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    print(results_files.format_table(results))
    print(f"results written to {workdir.value}/results.{{json,csv,md,tex}}, plots in "
          f"{workdir.value}/plots, predictions in {workdir.value}/predictions")

  absl_app.run(main, argv=list(argv))
  return 0


def compare(argv: Sequence[str]) -> int:
  from churn_jax.outputs import compare as compare_lib  # Late: jax import only when needed.
  parser = _Parser(
      prog="churn-jax compare",
      description="Churn between two models' predictions on the same examples. A and B: a "
      "study workdir (with --method), a study's predictions/<method>.npz (with --run), or a "
      ".npy/.npz/.csv of probabilities (N, K), logits (N, K, with --logits) or classes (N,).")
  parser.add_argument("a", help="model A (the old one)")
  parser.add_argument("b", help="model B (the new one)")
  parser.add_argument("--labels", help=".npy/.csv/.npz of (N,) true labels (a study's own "
                      "labels are used when A or B is a study)")
  parser.add_argument("--logits", action="store_true", help="plain (N, K) inputs are logits")
  parser.add_argument("--format", choices=("md", "json", "csv"), default="md")
  parser.add_argument("--method", help="method of a study workdir (A, and B unless --method-b)")
  parser.add_argument("--method-b", help="method of B's workdir")
  parser.add_argument("--run", type=int, default=0, help="run id in A's study (default 0)")
  parser.add_argument("--run-b", type=int, help="run id in B's study (default: --run)")
  parser.add_argument("--alpha", type=float, default=1.0, help="SChurn alpha (default 1)")
  parser.add_argument("--top", type=int, default=10, help="rows of the flip tables")
  parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
  args = parser.parse_args(argv)
  if not (math.isfinite(args.alpha) and args.alpha > 0):
    return _fail(f"--alpha must be a finite number > 0, got {args.alpha}")
  if args.top < 1 or args.bootstrap < 1:
    return _fail("--top and --bootstrap must be >= 1")
  try:
    a = compare_lib.load_model(args.a, "A", args.method, args.run, args.logits)
    b = compare_lib.load_model(args.b, "B", args.method_b or args.method,
                               args.run if args.run_b is None else args.run_b, args.logits)
    labels = compare_lib.load_labels(args.labels) if args.labels else None
    result = compare_lib.compare(a, b, labels, alpha=args.alpha, top=args.top,
                                 bootstrap=args.bootstrap)
  except compare_lib.CompareError as e:
    return _fail(str(e))
  if args.format == "json":
    print(json.dumps(result, indent=1))
  elif args.format == "csv":
    print(compare_lib.format_csv(result), end="")
  else:
    print(compare_lib.format_markdown(result), end="")
  return 0


def report(argv: Sequence[str]) -> int:
  from churn_jax.study import regenerate
  parser = _Parser(prog="churn-jax report",
                   description="Rewrite results.{md,csv,tex}, differences.{md,csv} and "
                   "plots/ of a study workdir from its saved predictions (checked against "
                   "results.json).")
  parser.add_argument("workdir")
  parser.add_argument("--against", default="", help="Comma-separated methods: also write "
                      "differences_vs_<method>.{md,csv}, every method against that one "
                      "(e.g. anti_distill against ensemble2).")
  parser.add_argument("--repair", action="store_true", help="Rewrite results.json from the "
                      "predictions where they disagree (refused without this flag).")
  args = parser.parse_args(argv)
  try:
    written, notes = regenerate.regenerate(
        args.workdir, against=[a for a in args.against.split(",") if a], repair=args.repair)
  except ValueError as e:
    return _fail(str(e))
  for note in notes:
    print(note, file=sys.stderr)
  print("\n".join(["written:"] + written))
  return 0


def docs(argv: Sequence[str]) -> int:
  from churn_jax.cli import docs_tables
  parser = _Parser(prog="churn-jax docs",
                   description="Check (default) or rewrite the tables in README.md and "
                   "docs/*.md that studies produce, re-derived from their workdirs' predictions "
                   "(blocks marked '<!-- churn-jax docs: ID workdir=DIR -->').")
  parser.add_argument("files", nargs="*", help="markdown files (default: README.md docs/*.md)")
  parser.add_argument("--write", action="store_true", help="rewrite stale tables")
  parser.add_argument("--source", action="append", default=[], metavar="WORKDIR=DIR",
                      help="read the blocks marked workdir=WORKDIR from DIR (a workdir or a "
                      "--cache directory)")
  parser.add_argument("--only", default="", metavar="WORKDIR,...",
                      help="only the blocks of these workdirs (default: every block)")
  parser.add_argument("--cache", nargs=2, metavar=("WORKDIR", "OUT"),
                      help="write a small cache of WORKDIR (results.json + deployed.npz) to OUT")
  args = parser.parse_args(argv)
  try:
    if args.cache:
      print("\n".join(["written:"] + docs_tables.write_cache(*args.cache)))
      return 0
    bad = [s for s in args.source if "=" not in s]
    if bad:
      return _fail(f"--source {bad[0]!r}: expected WORKDIR=DIR")
    sources = dict(s.split("=", 1) for s in args.source)
    files = args.files or ["README.md"] + sorted(glob.glob("docs/*.md"))
    only = [w for w in args.only.split(",") if w] or None
    stale = docs_tables.update(files, sources, write=args.write, only=only)
  except (ValueError, OSError) as e:
    return _fail(str(e).splitlines()[0])
  if args.write:
    print("\n".join(["rewritten:"] + stale) if stale else "every table is current")
    return 0
  if stale:
    return _fail(f"tables differ from their workdirs in {', '.join(stale)}; "
                 f"run churn-jax docs --write")
  print("every table is current")
  return 0


COMMANDS = {"train": train, "compare": compare, "report": report, "docs": docs}


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] == "--version":
    import churn_jax  # The package's own version string (no layer: it is the top).
    print(f"churn-jax {churn_jax.__version__}")
    return 0
  if not argv or argv[0] in ("-h", "--help"):
    print(f"usage: {USAGE}\n\n  train    run a churn study (--config, --workdir)\n"
          f"  compare  churn between two prediction files of any origin\n"
          f"  report   tables and plots of a workdir from its predictions\n"
          f"  docs     check or rewrite README/docs tables from their workdirs\n"
          f"  --version  print churn_jax's version")
    return 0 if argv else 1
  if argv[0] not in COMMANDS:
    return _fail(f"unknown command {argv[0]!r}; usage: {USAGE}")
  return COMMANDS[argv[0]](argv[1:])


def entry_point():
  sys.exit(main())
