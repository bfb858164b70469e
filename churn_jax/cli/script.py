"""The launch scripts' shared shell: `--help`, flag errors and failures as one line.

launch/sweep.py and launch/table1.py call `run(main, doc)`: `--help` prints the script's
docstring and its flags and exits 0; a bad flag, a config file that fails to load (syntax
error, missing, raising), a disk-full error or a bad value is one line on stderr and exit 1,
never absl's two-line FATAL or a traceback.
"""

import os
import sys
from typing import Callable, Optional, Sequence

from absl import flags

from churn_jax.runtime import io_errors

FLAGS = flags.FLAGS
HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")


class UsageError(ValueError):
  """Bad command line: reported as one line."""


def _last_line(e: BaseException) -> str:
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  return lines[-1] if lines else type(e).__name__


def config_error(spec: str, e: BaseException) -> str:
  """One line for a config file that could not be loaded or whose get_config raised."""
  if isinstance(e, SyntaxError):
    return f"--config={spec}: syntax error in {e.filename}, line {e.lineno}: {e.msg}"
  return f"--config={spec}: {type(e).__name__}: {_last_line(e)}"


def help_text(doc: str, program: str, modules: Sequence[str] = ()) -> str:
  """The script's docstring and its flags (those of the main module and of `modules`)."""
  parts = [FLAGS.main_module_help()] + [FLAGS.module_help(m) for m in modules]
  flag_help = "\n".join(p for p in parts if p.strip())
  return f"{doc.strip()}\n\nusage: {program} [flags]\n{flag_help}".rstrip()


def parse(argv: Sequence[str], required: Sequence[str] = ("config", "workdir")) -> list:
  """absl flags of `argv`; UsageError with one line for anything wrong."""
  try:
    rest = FLAGS(list(argv))
  except flags.UnrecognizedFlagError as e:
    raise UsageError(f"unknown flag --{e.flagname}; see --help") from None
  except flags.Error as e:
    raise UsageError(_last_line(e).removeprefix("FATAL Flags parsing error: ")) from None
  if len(rest) > 1:
    raise UsageError(f"unexpected arguments: {' '.join(rest[1:])}; see --help")
  for name in required:
    if not getattr(FLAGS, name):
      raise UsageError(f"--{name} is required; see --help")
  return rest


def fail(message: str, hard: bool = False) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  if hard:  # Writers' exit handlers would retry the full disk and print tracebacks.
    sys.stdout.flush()
    os._exit(1)  # pylint: disable=protected-access
  sys.exit(1)


def run(main: Callable[[list], Optional[int]], doc: str, argv: Optional[Sequence[str]] = None,
        program: Optional[str] = None, required: Sequence[str] = ("config", "workdir"),
        modules: Sequence[str] = (), parse_fn: Optional[Callable] = None) -> None:
  """Parses flags (`parse_fn(argv)`, default `parse`), runs main(rest) and exits with its
  code; every failure is one line."""
  argv = list(sys.argv if argv is None else argv)
  program = program or os.path.relpath(argv[0]) if argv else "script"
  if any(a in HELP_FLAGS for a in argv[1:]):
    FLAGS.mark_as_parsed()
    print(help_text(doc, program, modules))
    sys.exit(0)
  try:
    rest = parse_fn(argv) if parse_fn else parse(argv, required)
    code = main(rest)
  except UsageError as e:
    fail(str(e))
  except Exception as e:  # pylint: disable=broad-except
    workdir = FLAGS["workdir"].value if "workdir" in FLAGS else ""  # Parsed or not.
    storage = io_errors.describe(e, workdir or "")
    if storage is not None:
      fail(storage, hard=True)
    if isinstance(e, (ValueError, KeyError, FileNotFoundError, NotADirectoryError,
                      IsADirectoryError, FileExistsError, PermissionError, FloatingPointError)):
      fail(_last_line(e) if isinstance(e, OSError) else str(e).strip("'\""))
    raise
  sys.exit(code or 0)
