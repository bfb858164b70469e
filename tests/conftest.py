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
