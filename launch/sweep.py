"""Runs the coefficient sweep of an experiment config (its `get_sweep()`), or prints it.

  # The App. A protocol: every point of every sweep, S points x R runs of a method trained as
  # one program, results in <workdir>/results.json (entries "codistill@beta=0.5"), then the
  # protocol tables (<workdir>/protocol.md, protocol_table2_*.{md,csv,tex}, protocol_curves.*):
  python launch/sweep.py --config=experiments/mnist1d.py:runs=10 --workdir=/tmp/protocol \
      --mode=stacked --validation_fraction=0.1
  # Another sweep than get_sweep()'s: --sweep='codistill:beta.value=0.5,1,2,3;skl:beta=0.01'
  # Two stages (App. A): eq. 19 at co-distillation's selected beta, chosen after stage 1:
  #   --sweep='codistill:beta.value=0.5,1;codistill_entropy:entropy_beta.value=0.1,0.2:beta.value<codistill'
  # One entry after another on this machine, results in <workdir>/<entry name>/:
  python launch/sweep.py --config=experiments/cifar10.py --workdir=/mnt/bucket/churn/cifar10
  # One TPU VM per entry: prints one launch/tpu_vm.sh command line per entry.
  python launch/sweep.py --config=experiments/cifar10.py --workdir=/mnt/bucket/churn/cifar10 \
      --mode=print_tpu_commands

An entry is a dict of dotted config keys -> values ({"method_configs.skl.beta": 0.3});
every key must already exist in the config (a typo fails before anything trains). An entry
of a later stage also names `"from_selected": {"beta.value": "codistill"}`: that key of its
method takes the selected point of an earlier sweep, so it runs only in --mode=stacked.
"""

import importlib.util
import inspect
import json
import os
import platform
import re
import shlex
import sys
from typing import Any, Dict, List, Tuple

from absl import flags, logging

from churn_jax.cli import script
from churn_jax.runtime import preemption, workdir_lock

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a script, so tests can import the helpers below without
  claiming global flag names such as --config."""
  flags.DEFINE_string("config", None, "Experiment config file, optionally with ':args'.")
  flags.DEFINE_string("workdir", None, "Parent directory; each entry gets a subfolder.")
  flags.DEFINE_enum("mode", "sequential", ["sequential", "stacked", "print_tpu_commands"],
                    "Run the entries here one after another, all points of a method as one "
                    "stacked program (and the protocol tables), or print TPU VM commands.")
  flags.DEFINE_string("sweep", "", "stacked: 'method:key=v1,v2;...' instead of get_sweep().")
  flags.DEFINE_float("validation_fraction", 0.0, "stacked: hold out this fraction of the "
                     "training data to select coefficients on (0 = select on test only).")
  flags.DEFINE_list("only", [], "Run only these entry names (default: all).")
  flags.DEFINE_bool("skip_done", True, "Skip entries whose results.json already has every "
                    "method (a restarted sweep resumes where it stopped).")
  flags.DEFINE_bool("deterministic_ops", False, "Set XLA_FLAGS=--xla_gpu_deterministic_ops=true "
                    "before JAX starts (GPU only; CPU/TPU are already deterministic).")


def load_config_module(spec: str):
  """(module, arg) for 'path/to/config.py[:arg]'."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} not found")
  module_spec = importlib.util.spec_from_file_location(
      "churn_config_" + re.sub(r"\W", "_", os.path.basename(path)[:-3]), path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  # Syntax error, a failing import.
    raise ValueError(script.config_error(spec, e)) from None
  return module, (arg or None)


def get_sweep(module, arg) -> List[Dict[str, Any]]:
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{module.__name__} has no get_sweep()")
  takes_arg = bool(inspect.signature(module.get_sweep).parameters)
  return list(module.get_sweep(arg) if takes_arg else module.get_sweep())


def _lookup(config, key: str):
  """The value at dotted `key`; KeyError naming the first missing component."""
  node = config
  for i, part in enumerate(key.split(".")):
    if not hasattr(node, "keys") or part not in node:
      raise KeyError(".".join(key.split(".")[:i + 1]))
    node = node[part]
  return node


FROM_SELECTED = "from_selected"  # churn_jax.study.sweeps.FROM_SELECTED (no JAX import here).


def check_overrides(config, overrides: Dict[str, Any]) -> None:
  """Raises ValueError (one line) unless every dotted key names an existing config field."""
  for key in overrides:
    if key == FROM_SELECTED:  # Resolved by the stacked mode's stages (sweeps.train_staged).
      continue
    try:
      value = _lookup(config, key)
    except KeyError as e:
      raise ValueError(f"unknown config key {key!r} (no {e.args[0]!r} in the config)") from None
    if hasattr(value, "keys"):
      raise ValueError(f"config key {key!r} is a section, not a value")


def apply_overrides(config, overrides: Dict[str, Any]):
  """A copy of `config` with the dotted-key overrides applied (existing keys only)."""
  check_overrides(config, overrides)
  overrides = {k: v for k, v in overrides.items() if k != FROM_SELECTED}
  config = config.copy_and_resolve_references()
  with config.unlocked():
    try:
      config.update_from_flattened_dict(dict(overrides))
    except (TypeError, KeyError) as e:
      raise ValueError(f"bad override {overrides}: {e}") from None
  return config


def entry_name(index: int, overrides: Dict[str, Any]) -> str:
  """A folder name such as '03_skl_beta=0.2' (index first, so names sort like the sweep)."""
  methods = str(overrides.get("methods", ""))
  parts = [methods] if methods else []
  for key, value in overrides.items():
    if key in ("methods", FROM_SELECTED):
      continue
    key = key.removeprefix("method_configs.").removesuffix(".value")
    key = key.removeprefix(methods + ".") if methods else key
    parts.append(f"{key}={value}")
  return f"{index:02d}_" + re.sub(r"[^A-Za-z0-9._=+-]", "-", "_".join(parts) or "base")


def sweep_entries(config_spec: str) -> Tuple[Any, List[Tuple[str, Dict[str, Any]]]]:
  """The base config and [(name, overrides)], every entry already checked against it."""
  module, arg = load_config_module(config_spec)
  try:  # A config or sweep function that raises is the user's input, reported in one line.
    config = module.get_config(arg)
    sweep = get_sweep(module, arg)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(script.config_error(config_spec, e)) from None
  entries = [(entry_name(i, o), o) for i, o in enumerate(sweep)]
  for name, overrides in entries:
    try:
      check_overrides(config, overrides)
    except ValueError as e:
      raise ValueError(f"sweep entry {name}: {e}") from None
  return config, entries


def placeholders(overrides: Dict[str, Any]) -> Dict[str, Any]:
  """A later stage's entry with each fixed key set to SELECTED_<source>_<key>: a value that
  fails the config's type check, so the command cannot run before it is filled in."""
  out = {k: v for k, v in overrides.items() if k != FROM_SELECTED}
  method = overrides.get("methods", "")
  for key, source in (overrides.get(FROM_SELECTED) or {}).items():
    out[f"method_configs.{method}.{key}"] = f"SELECTED_{source}_{key}"
  return out


def tpu_command(config_spec: str, workdir: str, name: str, overrides: Dict[str, Any]) -> str:
  """The launch/tpu_vm.sh line that trains one entry on its own TPU VM."""
  study = os.path.basename(config_spec.partition(":")[0]).removesuffix(".py")
  vm = re.sub(r"[^a-z0-9-]+", "-", f"churn-{study}-{name}".lower())[:60].rstrip("-")
  args = [f"--config={config_spec}", f"--workdir={workdir.rstrip('/')}/{name}"]
  args += [f"--config.{k}={v}" for k, v in overrides.items()]
  return f"TPU_NAME={vm} launch/tpu_vm.sh all " + " ".join(shlex.quote(a) for a in args)


def is_done(config, workdir: str) -> bool:
  """True if `workdir`/results.json holds every method of `config`, from this same config."""
  from churn_jax.runtime import fileio  # pylint: disable=g-import-not-at-top
  from churn_jax.study import results_store
  path = os.path.join(workdir, "results.json")  # gs:// workdirs too (fileio is epath).
  if not fileio.exists(path):
    return False
  try:
    results = json.loads(fileio.read_text(path))
  except ValueError:
    return False  # Unreadable: let the trainer say so.
  done, data = results.get("methods", {}), results.get("data")  # data: what was trained on.
  names = [m.strip() for m in str(config.methods).split(",") if m.strip()]
  if not all(done.get(name, {}).get("fingerprint") ==
             results_store.fingerprint(config, name, data) for name in names):
    return False
  alpha = float(config.get("schurn_alpha", 1.0))
  for name in names:  # results.json is derived data: an entry its predictions contradict is
    try:              # not done; the trainer then refuses it in one line.
      if results_store.rederive(workdir, name, done[name], alpha)[1]:
        return False
    except ValueError:
      return False
  return True


def machine() -> str:
  """The CPU model (lscpu's), core count and accelerator, for the tables' provenance."""
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  device = jax.devices()[0]
  return f"{cpu}, {os.cpu_count()} cores; JAX {jax.default_backend()} ({device.device_kind})"


def stages_text(results: Dict[str, Any]) -> str:
  """The protocol.md lines saying which sweeps ran in which stage and, for a later stage, the
  selected point each fixed coefficient came from (read from the entries themselves)."""
  stages = results.get("stages") or []
  if len(stages) < 2:
    return ""
  lines = ["", "Stages (App. A: a later stage uses the earlier stage's selected coefficient):"]
  for level, methods in enumerate(stages):
    for method in methods:
      fixed = next((e["sweep"].get("fixed") for e in results["methods"].values()
                    if (e.get("sweep") or {}).get("method") == method
                    and e["sweep"].get("fixed")), None)
      text = "; ".join(f"{k} = {f['value']:g}, the point {f['point']} selected on "
                       f"{f['selection']} churn" for k, f in (fixed or {}).items())
      lines.append(f"- stage {level + 1}: {method}" + (f" with {text}" if text else ""))
  return "\n".join(lines) + "\n"


def run_stacked(config, entries) -> int:
  """Trains every sweep point as part of its method's stack, then writes the protocol."""
  from churn_jax.runtime import distributed  # pylint: disable=g-import-not-at-top
  distributed.maybe_initialize()
  from churn_jax.study import sweep_stages, sweeps  # pylint: disable=g-import-not-at-top
  from churn_jax.protocol import tables  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  try:
    if FLAGS.sweep:
      plain, sweep_list = [], sweeps.parse_sweeps(FLAGS.sweep)
    else:
      plain, sweep_list = sweeps.from_overrides([o for _, o in entries])
    if "baseline" in config.method_configs and "baseline" not in plain:
      plain.insert(0, "baseline")  # Every verdict is a difference against the baseline.
    results, seconds = sweep_stages.timed_study(config, FLAGS.workdir, sweep_list, plain,
                                          FLAGS.validation_fraction)
  except (ValueError, FileNotFoundError, FloatingPointError, workdir_lock.WorkdirBusyError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except preemption.Stopped as e:
    print(e, file=sys.stderr, flush=True)
    return e.exit_code
  command = "python launch/sweep.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  header = (f"# Protocol: {FLAGS.config}\n\nCommand: `{command}`\n\n"
            f"Wall time of this invocation (training reused entries is skipped): "
            f"{seconds:.0f} s on {machine()}.\n" + stages_text(results))
  paths = tables.write_protocol(FLAGS.workdir, results, header)
  from churn_jax.runtime import fileio  # pylint: disable=g-import-not-at-top
  print(fileio.read_text(paths[0]), flush=True)
  print(f"wall time {seconds:.1f} s; wrote {', '.join(paths)}", flush=True)
  if results["failed"]:
    print(f"error: diverged, left out: {', '.join(results['failed'])}", file=sys.stderr)
    return 1
  return 0


def main(argv):
  del argv  # script.run refused extra arguments.
  if FLAGS.mode != "print_tpu_commands":  # That mode writes nothing here.
    workdir_lock.check_workdir(FLAGS.workdir)
  if not 0 <= FLAGS.validation_fraction < 1:
    raise script.UsageError(f"--validation_fraction must lie in [0, 1), got "
                            f"{FLAGS.validation_fraction:g}")
  if FLAGS.deterministic_ops:  # Before anything initialises a JAX backend.
    from churn_jax.study import table1  # pylint: disable=g-import-not-at-top
    os.environ["XLA_FLAGS"] = table1.deterministic_xla_flags(os.environ.get("XLA_FLAGS", ""))
  config, entries = sweep_entries(FLAGS.config)
  from churn_jax.study import config_checks  # pylint: disable=g-import-not-at-top
  for name, overrides in [("the base config", {})] + entries:  # Before JAX is imported.
    try:
      config_checks.check_values(apply_overrides(config, overrides))
    except ValueError as e:
      raise ValueError(f"sweep entry {name}: {e}") from None
  if FLAGS.only:
    unknown = [n for n in FLAGS.only if n not in dict(entries)]
    if unknown:
      raise script.UsageError(f"--only: no sweep entry {unknown[0]!r}; the entries are "
                              f"{', '.join(n for n, _ in entries)}")
  if FLAGS.mode == "stacked":
    if FLAGS.only:
      raise script.UsageError("--only applies to --mode=sequential and print_tpu_commands")
    return run_stacked(config, entries)
  if FLAGS.only:
    entries = [(n, o) for n, o in entries if n in FLAGS.only]
  staged = [n for n, o in entries if FROM_SELECTED in o]
  if FLAGS.mode == "print_tpu_commands":
    for name, overrides in entries:
      print(tpu_command(FLAGS.config, FLAGS.workdir, name, placeholders(overrides)))
    if staged:
      print(f"note: {', '.join(staged)} take a coefficient from an earlier stage's selected "
            f"point: replace each SELECTED_<method>_<key> once that stage has finished (or use "
            f"--mode=stacked, which does it)", file=sys.stderr)
    return
  if staged:  # Their fixed coefficient is known only after an earlier stage's selection.
    print(f"error: sweep entries {', '.join(staged)} take coefficients from an earlier stage's "
          f"selected point; run them with --mode=stacked", file=sys.stderr)
    sys.exit(1)

  from churn_jax.runtime import distributed  # pylint: disable=g-import-not-at-top
  distributed.maybe_initialize()  # Before anything touches a JAX backend.
  from churn_jax.outputs import results_files  # pylint: disable=g-import-not-at-top
  from churn_jax.study import train
  logging.set_verbosity(logging.INFO)
  failed = []
  for i, (name, overrides) in enumerate(entries):
    workdir = os.path.join(FLAGS.workdir, name)
    entry_config = apply_overrides(config, overrides)
    if FLAGS.skip_done and is_done(entry_config, workdir):
      logging.info("sweep entry %s: already done in %s, skipped", name, workdir)
      continue
    logging.info("sweep entry %d/%d %s: %s -> %s", i + 1, len(entries), name, overrides,
                 workdir)
    try:
      results = train.train_and_evaluate(entry_config, workdir)
    except preemption.Stopped as e:
      print(e, file=sys.stderr, flush=True)
      sys.exit(e.exit_code)
    except (ValueError, FloatingPointError, FileNotFoundError,
            workdir_lock.WorkdirBusyError) as e:
      # One diverged coefficient should not cost the rest of the sweep.
      print(f"error: sweep entry {name}: {e}", file=sys.stderr)
      failed.append(name)
      continue
    print(f"== {name}\n{results_files.format_table(results)}", flush=True)
  if failed:
    print(f"error: {len(failed)} sweep entries failed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  script.run(main, __doc__)
