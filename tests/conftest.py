"""Test-session setup shared by every test file."""

import atexit
import os
import shutil
import tempfile

# The configs' compile_cache_dir="auto" writes under $XDG_CACHE_HOME, which the tests point at
# a folder of their own (pytest_configure below), so tests never touch the user's cache. A
# program one test compiled is loaded by the next test that compiles it, as a user's second
# study would, and by the next test run in this checkout: JAX keys an entry on the program,
# the jaxlib version and the XLA flags, so an entry is only ever loaded for the very program
# it was compiled from, and a code change recompiles exactly the programs it changed (a second
# run of the suite: measured in README.md). The cache is safe under concurrent writers
# (tests/runtime/compile_cache_test.py).


def pytest_configure(config):
  """Sets the folder once, in the process that starts the xdist workers (they and the study
  processes they start inherit it): .pytest_cache/d/churn_jax_cache_home, which `pytest
  --cache-clear` empties (a cold run, as CI's clean checkout has); a temporary folder, removed
  at exit, when pytest's cache is off (-p no:cacheprovider)."""
  if "CHURN_JAX_TEST_CACHE_HOME" not in os.environ:
    cache, home = getattr(config, "cache", None), None
    if cache is not None:
      try:
        home = str(cache.mkdir("churn_jax_cache_home"))
      except OSError:  # A read-only checkout: a cold run in a temporary folder.
        home = None
    if home is None:
      home = tempfile.mkdtemp(prefix="churn_jax_tests_cache_")
      atexit.register(shutil.rmtree, home, True)
    os.environ["CHURN_JAX_TEST_CACHE_HOME"] = home
  os.environ["XDG_CACHE_HOME"] = os.environ["CHURN_JAX_TEST_CACHE_HOME"]


_WORKER_CACHE = None  # The run's cache folder, in a process that runs tests.


def pytest_sessionstart(session):
  """A process that runs tests compiles through the cache from its first test, not from its
  first study (the trainer's configure("auto")): on a second run every engine and method test
  loads its programs too. Set without starting a JAX backend (tests that choose their devices
  start it themselves); the xdist controller runs no test."""
  if (getattr(session.config.option, "numprocesses", None)
      and "PYTEST_XDIST_WORKER" not in os.environ):
    return
  global _WORKER_CACHE
  import jax  # pylint: disable=g-import-not-at-top
  from churn_jax.runtime import compile_cache  # pylint: disable=g-import-not-at-top
  _WORKER_CACHE = compile_cache.directory(compile_cache.AUTO)
  os.makedirs(_WORKER_CACHE, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", _WORKER_CACHE)


def pytest_runtest_setup(item):  # pylint: disable=unused-argument
  """Back to the run's cache before each test: a study with compile_cache_dir="" (or a test of
  the cache itself) turns it off for the rest of the process."""
  if not _WORKER_CACHE:
    return
  import jax  # pylint: disable=g-import-not-at-top
  if jax.config.jax_compilation_cache_dir != _WORKER_CACHE:
    from churn_jax.runtime import compile_cache  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_compilation_cache_dir", _WORKER_CACHE)
    compile_cache.jax_cache.reset_cache()  # JAX opens the folder anew (configure does too).


# The studies of a test run compile their step, predict and init with tests/fast_jit.py's
# cheaper XLA:CPU options (engine/step.py: $CHURN_JAX_CPU_COMPILER_OPTIONS; every process
# started from here inherits it): six study-heavy test files took 133 CPU-s at the shipped
# -O1, 77 with these, all passing. The shipped options are pinned by
# tests/engine/step_options_test.py (same bits as none, on LeNet-5; these differ in the last
# bit) and used where a bitwise claim is about them (numerics_test's remat;
# tests/fast_jit.py: shipped_step_options). `CHURN_JAX_CPU_COMPILER_OPTIONS= pytest ...` runs
# the shipped ones, without the XLA_FLAGS below.
# The same options as XLA_FLAGS reach every other program (metrics, checksums, eager ops, the
# tests' own jits; the step's options override them): the full suite cold, one run after the
# other on this 2-core EPYC, 600 -> 489 CPU-s in the tests, pytest 332 -> 274 s.
if "CHURN_JAX_CPU_COMPILER_OPTIONS" not in os.environ:
  import json  # pylint: disable=g-import-not-at-top
  from tests import fast_jit  # pylint: disable=g-import-not-at-top
  os.environ["CHURN_JAX_CPU_COMPILER_OPTIONS"] = json.dumps(fast_jit.CPU_OPTIONS)
  _flags = " ".join(f"--{k}={str(v).lower()}" for k, v in fast_jit.CPU_OPTIONS.items())
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flags}".strip()

# Every program, however small: a test's study compiles dozens of sub-second programs, and
# tests that build the same step again load it. Threshold 0.2 s -> 0: a full run loaded 497
# of ~3,300 compiles instead of 248; six study-heavy test files, alternated twice on one idle
# machine: 114 -> 110 CPU-s (within the ~5% spread of repeats; writing every entry costs too).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# Every temporary file of a test run goes under one folder: the tests' mkdtemp calls, the
# xdist workers and the study processes they start (all inherit $TMPDIR). The process that made
# it removes it when the run passed and names it when one failed (pytest_sessionfinish).
# Runs used to leave ~100 folders and ~110 MB in /tmp each.
_OWN_TMP = "CHURN_JAX_TEST_TMP" not in os.environ
if _OWN_TMP:
  os.environ["CHURN_JAX_TEST_TMP"] = tempfile.mkdtemp(prefix="churn_jax_tests_")
os.environ["TMPDIR"] = tempfile.tempdir = os.environ["CHURN_JAX_TEST_TMP"]


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
  if _OWN_TMP and exitstatus == 0:
    shutil.rmtree(os.environ["CHURN_JAX_TEST_TMP"], ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus):
  if _OWN_TMP and exitstatus != 0:
    terminalreporter.write_line(
        f"temporary files of this run kept in {os.environ['CHURN_JAX_TEST_TMP']}")


# Fixtures built once per test run and shared by the xdist workers (tests/testing.py:
# shared_dir): this process makes the folder before it starts the workers, which inherit the
# variable; the process that made it removes it at exit.
if "CHURN_JAX_TEST_SHARED" not in os.environ:
  os.environ["CHURN_JAX_TEST_SHARED"] = tempfile.mkdtemp(prefix="churn_jax_tests_shared_")
  atexit.register(shutil.rmtree, os.environ["CHURN_JAX_TEST_SHARED"], True)


# Per-test CPU (this process and the child processes it waited for), for finding what the
# suite spends its 2 cores on: CHURN_JAX_TEST_CPU=FILE appends "cpu_s wall_s nodeid worker" lines.
# Wall time on a shared machine is noise; CPU seconds add up to what `-n 2` costs.
_CPU_LOG = os.environ.get("CHURN_JAX_TEST_CPU")
if _CPU_LOG:
  import resource
  import time

  import pytest

  def _cpu() -> float:
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))

  @pytest.hookimpl(hookwrapper=True)
  def pytest_runtest_protocol(item, nextitem):  # pylint: disable=unused-argument
    cpu, wall = _cpu(), time.time()
    yield
    with open(_CPU_LOG, "a") as f:
      f.write(f"{_cpu() - cpu:.2f} {time.time() - wall:.2f} {item.nodeid} "
              f"{os.environ.get('PYTEST_XDIST_WORKER', '-')}\n")


# The longest tests (whole studies in child processes; the CHURN_JAX_TEST_CPU log's wall
# column, longest first) start first: xdist hands tests out in collection order, and one of
# these near the end held one worker while the other had nothing left (442 against 355 s of
# wall time per worker, a full run in 450 s).
_LONGEST_FIRST = (
    "tests/runtime/multihost_test.py", "tests/study/paper_configs_test.py::RunlocalTrainingTest",
    "tests/runtime/gcs_emulator_test.py", "tests/runtime/faults_test.py",
    "tests/runtime/compile_cache_test.py", "tests/study/sweep_test.py",
    "tests/engine/numerics_test.py", "tests/packaging_test.py", "tests/cli/refused_start_test.py",
    "tests/outputs/recompute_test.py", "tests/study/two_stage_test.py",
    "tests/study/staged_sweep_test.py")


def _start_rank(item) -> int:
  for rank, prefix in enumerate(_LONGEST_FIRST):
    if item.nodeid.startswith(prefix):
      return rank
  return len(_LONGEST_FIRST)


# The shared multi-device child (tests/device_child.py) starts after collection, beside the
# tests, when a selected test needs it; the tests that read its results run last, so no pytest
# worker sits idle waiting for it.
def pytest_collection_modifyitems(items):
  from tests import device_child  # pylint: disable=g-import-not-at-top
  items.sort(key=_start_rank)  # Stable: a class's tests stay together and in order.
  device_child.parents_last(items)


def pytest_collection_finish(session):
  from tests import device_child  # pylint: disable=g-import-not-at-top
  device_child.start_early(session.items)
