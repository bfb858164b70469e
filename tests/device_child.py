"""One process with 8 fake CPU devices runs the multi-device halves of several test files.

Fake CPU devices must be requested before JAX starts, and pytest has started it, so each of
these files used to run its `ChildTest` in a child process of its own: each paid ~3 s of
imports and its own device setup. Now one child (`python tests/device_child.py`) runs the
ChildTest of every file in FILES, once per test run (shared by the pytest workers through
tests/testing.py:shared_dir), and each file's parent test asserts that its own ChildTest
methods ran and passed (`assert_passed`), so a failure still names its file and test.

The devices come from the trainer's own call (host_devices.configure(8), XLA_FLAGS removed):
tests/engine/sharding_test.py checks that call. Files that need fewer devices take a prefix
of jax.devices() (a sub-mesh of the 8).
"""

import atexit
import contextlib
import json
import os
import subprocess
import sys
import threading
import traceback
import unittest
from unittest import mock

NUM_DEVICES = 8
# Test files whose ChildTest runs here, by their module path from the repository root.
FILES = ("tests/runtime/prefetch_test.py", "tests/engine/sharding_test.py",
         "tests/engine/mesh_test.py", "tests/engine/wiring_test.py",
         "tests/benchmarks/memory_check_test.py")
RESULTS = "results.json"

# True in the child process only: the files keep their ChildTest (else they delete it).
RUNNING = False
# host_devices.configure's answer in the child (the count the process got).
CONFIGURED = 0

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module_name(path: str) -> str:
  return path[:-len(".py")].replace("/", ".")


@contextlib.contextmanager
def fast_compile():
  """XLA:CPU backend optimisations off (-O0) for the train step, predict and init the trainer
  builds inside (engine/step.py: CPU_COMPILER_OPTIONS, -O1 shipped). Sharded-equals-unsharded
  holds at any level; ResNet-8's loop study on 8 devices took 8.3 CPU-s at -O0 against 12.5
  at -O1. The shipped -O1 is pinned by tests/engine/step_options_test.py."""
  from churn_jax.engine import step  # pylint: disable=g-import-not-at-top
  with mock.patch.dict(step.CPU_COMPILER_OPTIONS, xla_backend_optimization_level=0):
    yield


class _Recorder(unittest.TextTestResult):
  """Records each test's outcome by its id (module.ChildTest.test_x): "ok" or the traceback."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.outcomes = {}

  def addSuccess(self, test):
    super().addSuccess(test)
    self.outcomes[test.id()] = "ok"

  def _fail(self, test, err):
    self.outcomes[test.id()] = "".join(traceback.format_exception(*err))

  def addFailure(self, test, err):
    super().addFailure(test, err)
    self._fail(test, err)

  def addError(self, test, err):
    super().addError(test, err)
    self._fail(test, err)

  def addSkip(self, test, reason):  # A skipped child test is not a passed one.
    super().addSkip(test, reason)
    self.outcomes[test.id()] = f"skipped: {reason}"


def _child_main(out_dir: str, files) -> None:
  global RUNNING, CONFIGURED
  RUNNING = True
  from churn_jax.runtime import host_devices  # pylint: disable=g-import-not-at-top
  # Before any JAX computation of this process, through the trainer's own call.
  CONFIGURED = host_devices.configure(NUM_DEVICES)
  os.makedirs(out_dir, exist_ok=True)
  outcomes = {}
  for path in files:
    name = _module_name(path)
    try:
      module = __import__(name, fromlist=["ChildTest"])
      suite = unittest.defaultTestLoader.loadTestsFromTestCase(module.ChildTest)
    except Exception:  # pylint: disable=broad-except
      outcomes[name] = {"import": "".join(traceback.format_exception(*sys.exc_info()))}
      continue
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=_Recorder)
    outcomes[name] = runner.run(suite).outcomes
  with open(os.path.join(out_dir, RESULTS), "w") as f:
    json.dump(outcomes, f, indent=1)


def _run(out_dir: str) -> None:
  """Runs the child into `out_dir`; always leaves a results file, with the child's exit
  status and output tail, so one crash is reported by every file rather than rerun by each."""
  os.makedirs(out_dir)
  env = dict(os.environ, PYTHONPATH=_ROOT)
  from tests import testing  # pylint: disable=g-import-not-at-top
  env["XLA_FLAGS"] = testing.child_xla_flags()  # No device count: host_devices.configure.
  proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), out_dir], env=env,
                          cwd=_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
  atexit.register(lambda: proc.poll() is None and proc.kill())  # A session that ends early.
  try:
    _, stderr = proc.communicate(timeout=900)
  except subprocess.TimeoutExpired:
    proc.kill()
    _, stderr = proc.communicate()
  path = os.path.join(out_dir, RESULTS)
  outcomes = {}
  if os.path.exists(path):
    with open(path) as f:
      outcomes = json.load(f)
  with open(path, "w") as f:
    json.dump({"returncode": proc.returncode, "stderr": stderr[-6000:],
               "outcomes": outcomes}, f, indent=1)


def results() -> dict:
  """The child's results, run once per test run and shared by the pytest workers."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from tests import testing  # pylint: disable=g-import-not-at-top
  key = ml_collections.ConfigDict(dict(files=list(FILES), devices=NUM_DEVICES))
  folder = testing.shared_dir("device_child", key, lambda d: _run(os.path.join(d, "out")))
  with open(os.path.join(folder, "out", RESULTS)) as f:
    return json.load(f)


def parent(test_method):
  """Marks a test that calls assert_passed, so start_early knows the child is wanted."""
  test_method.needs_device_child = True
  return test_method


def _is_parent(item) -> bool:
  return getattr(getattr(item, "function", None), "needs_device_child", False)


def parents_last(items) -> None:
  """Moves the `parent` pytest items to the end (tests/conftest.py), keeping the order of the
  rest: by the time they run, the child start_early started is done, and no worker waits."""
  items.sort(key=_is_parent)  # Stable: False (the others) first, in their order.


def start_early(items) -> None:
  """Starts the child in a background thread when a selected pytest item is a `parent`
  (tests/conftest.py, after collection): it then runs beside the tests instead of holding up
  the first parent test and every pytest worker that reaches another one meanwhile (a worker
  waited 82 s). The thread holds shared_dir's lock while the child runs; the parent tests'
  own results() calls wait on that lock, or build it themselves if the thread failed."""
  if not any(_is_parent(item) for item in items):
    return
  import ml_collections  # pylint: disable=g-import-not-at-top,unused-import
  from tests import testing  # pylint: disable=g-import-not-at-top,unused-import
  def run():
    try:
      results()
    except Exception:  # pylint: disable=broad-except
      pass  # The parent tests' own results() calls build it again and report the error.
  threading.Thread(target=run, name="device_child", daemon=True).start()


def assert_passed(test, test_file: str) -> None:
  """Every ChildTest method of `test_file` (a path as in FILES) ran in the child and passed."""
  rel = os.path.relpath(os.path.abspath(test_file), _ROOT)
  test.assertIn(rel, FILES)
  res = results()
  name = _module_name(rel)
  module = sys.modules.get(name) or __import__(name, fromlist=["ChildTest"])
  # The parent deletes ChildTest; the file keeps its test names (CHILD_TESTS).
  expected = sorted(f"{name}.ChildTest.{t}" for t in module.CHILD_TESTS)
  outcomes = res["outcomes"].get(name, {})
  test.assertEqual(sorted(outcomes), expected,
                   f"child exit {res['returncode']}:\n{res['stderr']}")
  for test_id, outcome in sorted(outcomes.items()):
    test.assertEqual(outcome, "ok", f"{test_id} failed in the device child:\n{outcome}")


if __name__ == "__main__":
  sys.path.insert(0, _ROOT)
  # The files read RUNNING from tests.device_child, not from this __main__ copy.
  from tests import device_child  # pylint: disable=g-import-not-at-top,import-self
  # `python tests/device_child.py OUT_DIR [FILE ...]`: FILEs default to FILES.
  device_child._child_main(sys.argv[1], sys.argv[2:] or FILES)  # pylint: disable=protected-access
