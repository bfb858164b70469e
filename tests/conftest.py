"""Test-session setup shared by every test file."""

import atexit
import os
import shutil
import tempfile

# The configs' compile_cache_dir="auto" writes under $XDG_CACHE_HOME: give each pytest worker
# (and the study processes it starts, which inherit the variable) its own empty one, so tests
# neither touch the user's cache nor race another worker on the same entries.
_CACHE_HOME = tempfile.mkdtemp(prefix=f"churn_jax_tests_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_")
os.environ["XDG_CACHE_HOME"] = _CACHE_HOME
atexit.register(shutil.rmtree, _CACHE_HOME, True)

# Fixtures built once per test run and shared by the xdist workers (tests/testing.py:
# shared_dir): this process makes the folder before it starts the workers, which inherit the
# variable; the process that made it removes it at exit.
if "CHURN_JAX_TEST_SHARED" not in os.environ:
  os.environ["CHURN_JAX_TEST_SHARED"] = tempfile.mkdtemp(prefix="churn_jax_tests_shared_")
  atexit.register(shutil.rmtree, os.environ["CHURN_JAX_TEST_SHARED"], True)


# Per-test CPU (this process and the child processes it waited for), for finding what the
# suite spends its 2 cores on: CHURN_JAX_TEST_CPU=FILE appends "cpu_s wall_s nodeid" lines.
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
      f.write(f"{_cpu() - cpu:.2f} {time.time() - wall:.2f} {item.nodeid}\n")
