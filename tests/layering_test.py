"""No module imports from a layer above its own (the order is churn_jax.layers.LAYERS)."""

import ast
import os
import tempfile

from absl.testing import absltest

from churn_jax import layers

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "churn_jax")


def _imported_packages(tree: ast.AST):
  """Yields (line, first package name below churn_jax) for every import of churn_jax."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        parts = alias.name.split(".")
        if parts[0] == "churn_jax" and len(parts) > 1:
          yield node.lineno, parts[1]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      parts = node.module.split(".")
      if parts[0] != "churn_jax":
        continue
      if len(parts) > 1:
        yield node.lineno, parts[1]
      else:
        for alias in node.names:
          yield node.lineno, alias.name


def layer_violations(root: str = ROOT):
  rank = {name: i for i, name in enumerate(layers.LAYERS)}
  found = []
  for dirpath, _, files in os.walk(root):
    rel = os.path.relpath(dirpath, root)
    for f in files:
      if not f.endswith(".py"):
        continue
      own = rel.split(os.sep)[0] if rel != "." else None
      if own is None:
        # churn_jax/__init__.py is the public API (above everything); layers.py is data.
        continue
      if own not in rank:
        found.append(f"{rel}/{f}: package {own!r} is not in churn_jax.layers.LAYERS")
        continue
      with open(os.path.join(dirpath, f)) as fh:
        tree = ast.parse(fh.read())
      for line, pkg in _imported_packages(tree):
        if pkg == "layers":
          continue
        if pkg not in rank:
          found.append(f"{rel}/{f}:{line} imports churn_jax.{pkg}, which is in no layer")
        elif rank[pkg] > rank[own]:
          found.append(f"{rel}/{f}:{line}: {own} imports {pkg}, a higher layer")
  return found


def config_takers(root: str = ROOT):
  """Functions below the `configs` layer with a parameter named `config`: the study config
  is read once, in study/settings.py, and lower layers take small typed values."""
  rank = {name: i for i, name in enumerate(layers.LAYERS)}
  found = []
  for dirpath, _, files in os.walk(root):
    rel = os.path.relpath(dirpath, root)
    own = rel.split(os.sep)[0]
    if own not in rank or rank[own] >= rank["configs"]:
      continue
    for f in files:
      if not f.endswith(".py"):
        continue
      with open(os.path.join(dirpath, f)) as fh:
        tree = ast.parse(fh.read())
      for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          names = [a.arg for a in node.args.args + node.args.kwonlyargs]
          if "config" in names:
            found.append(f"{rel}/{f}:{node.lineno} {node.name}(config)")
  return found


class LayersTest(absltest.TestCase):

  def test_no_import_runs_up_a_layer(self):
    self.assertEqual(layer_violations(), [])

  def test_every_package_is_a_layer(self):
    packages = {d for d in os.listdir(ROOT)
                if os.path.isfile(os.path.join(ROOT, d, "__init__.py"))}
    self.assertEqual(packages, set(layers.LAYERS))

  def test_no_function_below_configs_takes_the_study_config(self):
    self.assertEqual(config_takers(), [])

  def test_config_checker_can_fail(self):
    tmp = tempfile.mkdtemp()
    self.addCleanup(__import__('shutil').rmtree, tmp)
    os.makedirs(os.path.join(tmp, "runtime"))
    os.makedirs(os.path.join(tmp, "study"))
    with open(os.path.join(tmp, "runtime", "bad.py"), "w") as f:
      f.write("def count(config):\n  return config.cpu_devices\n")
    with open(os.path.join(tmp, "study", "ok.py"), "w") as f:
      f.write("def count(config):\n  return config.cpu_devices\n")
    found = config_takers(tmp)
    self.assertEqual(found, ["runtime/bad.py:1 count(config)"])

  def test_checker_catches_an_upward_import(self):
    # The checker itself must be able to fail: a fake tree where core imports study.
    tmp = tempfile.mkdtemp()
    self.addCleanup(__import__('shutil').rmtree, tmp)
    os.makedirs(os.path.join(tmp, "core"))
    with open(os.path.join(tmp, "core", "bad.py"), "w") as f:
      f.write("def f():\n  from churn_jax.study import train\n")
    with open(os.path.join(tmp, "core", "ok.py"), "w") as f:
      f.write("from churn_jax import metrics\n")
    found = layer_violations(tmp)
    self.assertLen(found, 1)
    self.assertIn("core imports study", found[0])


if __name__ == "__main__":
  absltest.main()
