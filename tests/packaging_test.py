"""The wheel and sdist that `python -m build` makes install and run a study outside the repo.

`python -m build` makes the sdist, then the wheel from the sdist, so a file the sdist lacks
breaks the wheel too. The wheel goes into a fresh venv (no pip of its own; the test venv's
site-packages supply the dependencies through a .pth line, so nothing is downloaded and the
install takes seconds), every churn_jax module is imported from it, and a shortened default
study runs from a directory outside the repository with the config file copied beside it (as
launch/tpu_vm.sh ships experiments/ beside the sdist).
"""

import os
import shutil
import site
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from absl.testing import absltest

import churn_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def repo_modules():
  """churn_jax/**/*.py of the repository, as paths relative to ROOT."""
  out = set()
  for dirpath, _, files in os.walk(os.path.join(ROOT, "churn_jax")):
    if "__pycache__" in dirpath:
      continue
    out |= {os.path.relpath(os.path.join(dirpath, f), ROOT) for f in files if f.endswith(".py")}
  return out


def missing(archive_names, prefix=""):
  """Repository modules absent from an archive listing (names under `prefix`)."""
  have = {n[len(prefix):] for n in archive_names if n.startswith(prefix)}
  return sorted(repo_modules() - have)


class PackagingTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    dist = os.path.join(cls.tmp, "dist")
    # Built from a copy of what the sdist may take, so the build leaves no egg-info or build/
    # in the repository (where PYTHONPATH would make it look like an installed churn_jax).
    source = os.path.join(cls.tmp, "source")
    shutil.copytree(os.path.join(ROOT, "churn_jax"), os.path.join(source, "churn_jax"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in"):
      shutil.copy(os.path.join(ROOT, f), source)
    # --no-isolation: the test venv's setuptools builds it (an isolated build would download).
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source],
                   check=True, capture_output=True, text=True, timeout=600)
    cls.wheel = os.path.join(dist, f"churn_jax-{churn_jax.__version__}-py3-none-any.whl")
    cls.sdist = os.path.join(dist, f"churn_jax-{churn_jax.__version__}.tar.gz")

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp)
    super().tearDownClass()

  def test_archives_hold_every_module(self):
    with zipfile.ZipFile(self.wheel) as zf:
      names = zf.namelist()
    self.assertEqual(missing(names), [])
    self.assertFalse([n for n in names if n.startswith(("tests/", "examples/"))])
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(self.wheel) as zf:
      self.assertIn("churn-jax = churn_jax.cli.command:entry_point",
                    zf.read(entry_points).decode())
    with tarfile.open(self.sdist) as tf:
      names = tf.getnames()
    prefix = f"churn_jax-{churn_jax.__version__}/"
    self.assertEqual(missing(names, prefix), [])
    for f in ("setup.cfg", "pyproject.toml", "README.md"):
      self.assertIn(prefix + f, names)

  def test_the_check_catches_a_missing_subpackage(self):
    with zipfile.ZipFile(self.wheel) as zf:
      names = [n for n in zf.namelist() if not n.startswith("churn_jax/outputs/")]
    self.assertIn("churn_jax/outputs/__init__.py", missing(names))

  def test_wheel_installs_and_runs_a_study_outside_the_repo(self):
    venv = os.path.join(self.tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True,
                   timeout=120)
    python = os.path.join(venv, "bin", "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True, text=True
                             ).stdout.strip()
    with open(os.path.join(purelib, "test_dependencies.pth"), "w") as f:
      f.write("\n".join(site.getsitepackages()) + "\n")  # Appended after the venv's own.
    # Without PYTHONPATH: the repository's churn_jax must not count as installed, for pip or
    # for the study below.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                    "--no-index", "-q", self.wheel], check=True, capture_output=True,
                   text=True, timeout=300, env=env)
    outside = os.path.join(self.tmp, "elsewhere")
    os.makedirs(os.path.join(outside, "experiments"))
    shutil.copy(os.path.join(ROOT, "experiments", "mnist1d.py"),
                os.path.join(outside, "experiments"))

    def run(*args):
      return subprocess.run(args, cwd=outside, env=env, capture_output=True, text=True,
                            timeout=600)
    code = ("import importlib, pkgutil, churn_jax; print(churn_jax.__file__); "
            "[importlib.import_module(m.name) for m in "
            "pkgutil.walk_packages(churn_jax.__path__, 'churn_jax.') "
            "if not m.name.endswith('__main__')]")  # __main__ runs the command.
    out = run(python, "-c", code)
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    self.assertTrue(out.stdout.startswith(purelib), out.stdout)  # Not the repository's copy.
    churn = os.path.join(venv, "bin", "churn-jax")
    out = run(churn, "--version")
    self.assertEqual(out.stdout, f"churn-jax {churn_jax.__version__}\n")
    out = run(churn, "train", "--config=experiments/mnist1d.py:quick", "--workdir=w",
              "--config.methods=codistill", "--config.num_train_steps=20",
              "--config.lr.decay_steps=(10,)", "--config.progress=False",
              "--config.plots=False")
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    self.assertIn("| codistill | 3 | 2x | 1x |", out.stdout)
    self.assertTrue(os.path.isfile(os.path.join(outside, "w", "results.json")))


if __name__ == "__main__":
  absltest.main()
