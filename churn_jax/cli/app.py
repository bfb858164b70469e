"""The `train` command: flags, config loading, workdir checks, and errors as one line.

`run(argv)` is what `python launch/main.py ...` (and a console command) calls. Every bad
input, whether caught by absl's flag parser, the config file, validation or the workdir
checks, ends as one line on stderr and exit code 1, before anything is compiled, created or
written. A study stopped by SIGTERM/SIGINT exits 143/130 with one line naming the step.
"""

import difflib
import glob
import importlib.util
import logging as std_logging
import os
import sys
from typing import List, Optional, Sequence

from absl import flags, logging
from ml_collections import config_flags

# Light: jax is imported after parsing.
from churn_jax.runtime import io_errors, preemption, workdir_lock
from churn_jax.study import config_checks

FLAGS = flags.FLAGS
CONFIG = _CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/*.py), optionally with ':ARGS'.",
    lock_config=True)
WORKDIR = _WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory (or gs://bucket/path) for results, config.json, checkpoints.")

_DETERMINISTIC = flags.DEFINE_bool(
    "deterministic_ops", False, "Set XLA_FLAGS=--xla_gpu_deterministic_ops=true before JAX "
    "starts (GPU: deterministic reductions and scatters; CPU/TPU: already deterministic).")
DETERMINISTIC = _DETERMINISTIC  # launch/table1.py uses it too (one flag per process).

_HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")
_COMMON_KEYS = (
    ("methods=baseline,codistill", "methods to train: names of entries in method_configs"),
    ("num_runs=5", "independent replicate runs (>= 2); churn compares every pair"),
    ("num_train_steps=6000", "training steps per method"),
    ("batch_size=100", "global batch size (any device count)"),
    ("seed=0", "study seed; vary=init,data says what differs between runs"),
    ("data.npz_path=FILE", "your own data: an .npz with x_train, y_train, x_test, y_test"),
    ("model.name=mlp", "mlp, conv1d, lenet5, resnet20/32/56, resnet_v2_50"),
    ("model.hidden='(256, 256)'", "MLP widths"),
    ("lr.base=0.05", "peak learning rate"),
    ("method_configs.codistill.beta.value=2.0", "a method's coefficient (ramped ones: .value)"),
    ("checkpoint_every_steps=1000", "checkpoint period (also at the end of each method)"),
)


def _experiments_dir() -> Optional[str]:
  here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  path = os.path.join(here, "experiments")
  return path if os.path.isdir(path) else None


def usage(program: str = "launch/main.py") -> str:
  """What to pass: config files, their arguments, the most used keys."""
  lines = [
      "Trains R replicate runs of each method and measures the churn between them.",
      "",
      f"usage: {program} --config=CONFIG_FILE[:ARGS] --workdir=DIR [--config.KEY=VALUE ...]",
      "",
      "config files:"]
  directory = _experiments_dir()
  if directory:
    for path in sorted(glob.glob(os.path.join(directory, "*.py"))):
      if not os.path.basename(path).startswith("_"):
        lines.append(f"  {os.path.relpath(path)}")
  else:
    lines.append("  experiments/*.py of the churn_jax repository, or your own get_config(arg)")
  lines += [
      "arguments after ':' (comma-separated):",
      "  mnist1d.py, digits.py: quick (a smoke run), all (every method), runs=N;"
      " mnist1d.py: small",
      "  cifar10.py, cifar100.py, svhn.py, imagenet.py, inaturalist.py: runlocal, runs=N",
      "most used keys (any key of the config can be set; a typo fails):"]
  lines += [f"  --config.{key:<42} {what}" for key, what in _COMMON_KEYS]
  lines += [
      "workdir: results.{json,csv,md}, config.json (the resolved config), timings.json,",
      "  checkpoints/. Run the same command again to resume; finished methods are reused.",
      "  One study per workdir at a time (a lock). SIGTERM/Ctrl-C: checkpoint, then exit.",
      "example:",
      f"  {program} --config=experiments/mnist1d.py:quick --workdir=runs/quick"]
  return "\n".join(lines)


class UsageError(ValueError):
  """Bad command line: reported as one line."""


def _last_line(e: BaseException) -> str:
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  return lines[-1] if lines else type(e).__name__


def _config_spec(argv: Sequence[str]) -> Optional[str]:
  spec = None  # The last --config wins, as in absl.
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      spec = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      spec = argv[i + 1]
  return spec


def _load_config(spec: str):
  """get_config(arg) of a config file, as config_flags loads it (for error messages)."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_churn_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _unknown_key_message(argv: Sequence[str], name: str) -> str:
  """Explains an unknown --config.KEY: a key under a plain value, or a near miss."""
  key = name[len("config."):]
  try:
    config = _load_config(_config_spec(argv))
  except Exception:  # pylint: disable=broad-except
    return f"unknown config key {key!r} (--{name})"
  node, walked = config, []
  for part in key.split("."):
    if hasattr(node, "keys") and part in node:
      node = node[part]
      walked.append(part)
      continue
    if walked and not hasattr(node, "keys"):
      return (f"--{name}: config.{'.'.join(walked)} is a plain {type(node).__name__} "
              f"({node!r}), it has no key {part!r}; set --config.{'.'.join(walked)}=VALUE")
    known = list(node.keys()) if hasattr(node, "keys") else []
    close = difflib.get_close_matches(part, known, n=1)
    where = f"config.{'.'.join(walked)}" if walked else "the config"
    hint = f"; did you mean {'.'.join(walked + close)!r}?" if close else ""
    return f"unknown config key {key!r}: {where} has no key {part!r}{hint}"
  return f"cannot set --{name}"


def _config_overrides(argv: Sequence[str]) -> List[str]:
  return [a[2:].split("=", 1)[0] for a in argv if a.startswith("--config.")]


def _bad_override(argv: Sequence[str]) -> Optional[str]:
  """The message for the first --config.KEY that does not name a key of the config."""
  try:
    config = _load_config(_config_spec(argv))
  except Exception:  # pylint: disable=broad-except
    return None
  for name in _config_overrides(argv):
    node = config
    for part in name.split(".")[1:]:
      if not (hasattr(node, "keys") and part in node):
        return _unknown_key_message(argv, name)
      node = node[part]
  return None


def _strip_type(line: str) -> str:
  """'ValueError: x' -> 'x' (the exception's type says nothing to a user)."""
  head, sep, tail = line.partition(": ")
  return tail if sep and head.isidentifier() and head[0].isupper() else line


def parse(argv: Sequence[str]) -> List[str]:
  """Parses flags; raises UsageError with one line for anything wrong on the command line."""
  spec = _config_spec(argv)
  if spec is not None and not os.path.isfile(spec.partition(":")[0]):
    raise UsageError(f"--config={spec}: config file {spec.partition(':')[0]!r} not found")
  try:
    rest = FLAGS(list(argv))
    config = _CONFIG.value
    if config is not None:
      config.to_dict()  # config_flags hands back an error object for a file that failed.
  except flags.UnrecognizedFlagError as e:
    if e.flagname.startswith("config."):
      raise UsageError(_unknown_key_message(argv, e.flagname)) from None
    raise UsageError(f"unknown flag --{e.flagname}; see --help") from None
  except SyntaxError as e:
    raise UsageError(f"--config: syntax error in {e.filename}, line {e.lineno}: {e.msg}") \
        from None
  except Exception as e:  # pylint: disable=broad-except  # A config file or override failed.
    message = _bad_override(argv) if isinstance(e, (AttributeError, KeyError)) else None
    if message is None:
      message = f"--config={spec}: {_strip_type(_last_line(e))}"
      if isinstance(e, flags.Error) and "--config." in str(e).splitlines()[0]:
        message = _strip_type(_last_line(e))
    raise UsageError(message) from None
  if len(rest) > 1:
    raise UsageError(f"unexpected arguments: {' '.join(rest[1:])}; see --help")
  if not FLAGS.config:
    raise UsageError("--config is required (e.g. --config=experiments/mnist1d.py); see --help")
  if FLAGS.workdir is None:
    raise UsageError("--workdir is required; see --help")
  return rest


def _orbax_record_shown(record) -> bool:
  """Orbax logs every file transfer at INFO: keep its warnings, drop the chatter, and drop
  its tracebacks of a full disk (the study reports that itself, in one line)."""
  if "/orbax/" not in record.pathname:
    return True
  if record.levelno < std_logging.WARNING:
    return False
  text = record.getMessage()
  if record.exc_info and record.exc_info[1] is not None:
    text += str(record.exc_info[1])
  return not io_errors.matches(text)


def _quiet_orbax() -> None:
  logging.get_absl_handler().addFilter(_orbax_record_shown)


class _HoldStartupInfo(std_logging.Filter):
  """Holds INFO records back until the study has passed its refusals.

  A refusal (bad data, a busy workdir, a foreign results.json) is then the only line a user
  sees, not three lines of JAX start-up before it. The trainer's "dataset ..." line comes
  after every refusal: it releases what was held, in order. `MAX_HELD` bounds the wait.
  """
  MAX_HELD = 50

  def __init__(self, handler):
    super().__init__()
    self._handler = handler
    self.held = []
    self.released = False

  def filter(self, record) -> bool:
    if self.released or record.levelno >= std_logging.WARNING:
      return True
    self.held.append(record)
    if record.getMessage().startswith("dataset ") or len(self.held) >= self.MAX_HELD:
      self.release()
    return False

  def release(self) -> None:
    self.released = True
    held, self.held = self.held, []
    others = [f for f in self._handler.filters if f is not self]
    for record in held:  # The handler's other filters (plain functions or Filters) still apply.
      if all(f.filter(record) if hasattr(f, "filter") else f(record) for f in others):
        self._handler.emit(record)


def _hard_exit(code: int) -> None:
  sys.stdout.flush()
  sys.stderr.flush()
  # Exit handlers (TensorBoard's writers flushing to the full disk, a lost peer at jax's
  # shutdown barrier) would print tracebacks or wait; what is saved is already on disk.
  os._exit(code)  # pylint: disable=protected-access


def main(config, workdir: str) -> int:
  """Runs the study; returns the exit code. Errors are one line on stderr."""
  # Heavy imports after parsing, so a bad command line fails in a fraction of a second.
  from churn_jax.runtime import distributed  # pylint: disable=g-import-not-at-top
  from churn_jax.outputs import results_files
  from churn_jax.study import train
  import jax  # pylint: disable=g-import-not-at-top
  try:
    try:
      workdir_lock.check_workdir(workdir)
      distributed.maybe_initialize()  # Multi-host TPU slices only; a no-op elsewhere.
      results = train.train_and_evaluate(config, workdir)
    except Exception as e:  # pylint: disable=broad-except
      storage = io_errors.describe(e, workdir)  # Disk full in any shape, orbax's included.
      if storage is None:
        raise  # To the clauses below.
      print(f"error: {storage}", file=sys.stderr, flush=True)
      _hard_exit(1)
      return 1
  except preemption.Stopped as e:
    print(e, file=sys.stderr, flush=True)
    return e.exit_code
  except KeyboardInterrupt:
    print("interrupted; checkpoints written so far are kept; run the same command to resume",
          file=sys.stderr, flush=True)
    return 130
  except (ValueError, FloatingPointError, FileNotFoundError, workdir_lock.WorkdirBusyError,
          PermissionError, IsADirectoryError, NotADirectoryError) as e:
    # Bad input, a busy workdir or a diverged run: one clear line, non-zero exit.
    print(f"error: {_last_line(e) if isinstance(e, OSError) else e}", file=sys.stderr)
    return 1
  except jax.errors.JaxRuntimeError as e:  # A peer process died, or a device failed.
    print(f"error: {str(e).splitlines()[0][:500]}", file=sys.stderr, flush=True)
    _hard_exit(1)
  print(results_files.format_table(results))
  root = workdir.rstrip("/")
  plots = "plots/, " if config.get("plots", True) else ""
  print(f"written in {root}: results.{{json,csv,md,tex}}, differences.{{md,csv}} (against the "
        f"baseline), {plots}predictions/, curves/, tensorboard/, config.json, timings.json")
  return 0


def run(argv: Optional[Sequence[str]] = None, program: str = "launch/main.py") -> int:
  """The command line: parse, check, train. Exits the process with the study's exit code."""
  argv = list(sys.argv if argv is None else argv)
  if any(a in _HELP_FLAGS for a in argv[1:]):
    print(usage(program))
    sys.exit(0)
  try:
    parse(argv)
    # The config's plain values, before JAX is imported (a typo costs no ~9 s of imports).
    config_checks.check_values(_CONFIG.value)
    workdir_lock.check_workdir(FLAGS.workdir)
  except ValueError as e:  # UsageError included.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if _DETERMINISTIC.value:  # Before anything initialises a JAX backend.
    from churn_jax.study import table1  # pylint: disable=g-import-not-at-top
    os.environ["XLA_FLAGS"] = table1.deterministic_xla_flags(os.environ.get("XLA_FLAGS", ""))
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  _quiet_orbax()
  handler = logging.get_absl_handler()
  hold = _HoldStartupInfo(handler)
  handler.addFilter(hold)
  code = main(_CONFIG.value, FLAGS.workdir)
  if code == 0:
    hold.release()  # A study with nothing left to train logs no "dataset" line before.
  sys.exit(code)
