"""Models, datasets and method kinds named by import path, and every way they can be wrong.

Each bad path, signature or return shape is one ValueError line naming the config key, raised
by validation (before anything is written); the CLI test shows exit 1, one stderr line and no
workdir.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

from absl.testing import absltest
from absl.testing import parameterized
import ml_collections
import numpy as np

from churn_jax import data, methods, models
from churn_jax.study import validate
from tests import testing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_PKG = {
    "__init__.py": "",
    "nets.py": '''
        import flax.linen as nn
        import jax.numpy as jnp

        class Good(nn.Module):
          num_classes: int
          width: int = 8
          @nn.compact
          def __call__(self, x, train=False):
            x = x.reshape((x.shape[0], -1))
            return nn.Dense(self.num_classes)(nn.relu(nn.Dense(self.width)(x)))

        class Conv(Good):
          CONVOLUTIONAL = True

        class NoClasses(nn.Module):
          width: int = 8
          @nn.compact
          def __call__(self, x, train=False):
            return nn.Dense(3)(x)

        class WrongShape(Good):  # One logit too many.
          @nn.compact
          def __call__(self, x, train=False):
            return nn.Dense(self.num_classes + 1)(x.reshape((x.shape[0], -1)))

        class Broken(Good):
          @nn.compact
          def __call__(self, x, train=False):
            raise RuntimeError("forward failed")

        class NotAModule:
          num_classes = 3
        ''',
    "datasets.py": '''
        import numpy as np

        def blobs(n=40, seed=0):
          rng = np.random.default_rng(seed)
          y = rng.integers(0, 3, 2 * n)
          x = (rng.normal(size=(2 * n, 5)) + 3 * y[:, None]).astype(np.float32)
          return x[:n], y[:n], x[n:], y[n:]

        def as_dict(n=40, seed=0):
          x_train, y_train, x_test, y_test = blobs(n, seed)
          return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

        def no_args():
          return blobs()

        def three():
          return blobs()[:3]

        def missing_key(n=40, seed=0):
          d = as_dict(n, seed)
          del d["y_test"]
          return d

        def raises(n=40, seed=0):
          raise OSError("disk gone")

        class Source:  # A streamed source that forgot test_batches and sizes.
          name = "s"
          num_classes = 3
          def train_batches(self, *args, **kwargs):
            return iter(())

        def bad_source(n=40, seed=0):
          return Source()

        def streamed(n=40, seed=0):  # A source object (here churn_jax's own Dataset).
          from churn_jax.data import build_dataset
          return build_dataset("streamed", *blobs(n, seed), source="streamed")

        NOT_CALLABLE = 3
        ''',
    "losses.py": '''
        import jax.numpy as jnp
        from churn_jax.core import losses
        from churn_jax.methods.base import Method

        def build(name, cfg, num_steps):
          def loss(logits, labels, step, extra=None):
            ce = sum(losses.cross_entropy(logits[m], labels) for m in range(2))
            return ce, {"ce": ce}
          return Method(name=name, num_members=2, loss=loss, prediction="ensemble_mean")

        def two_args(name, cfg):
          return build(name, cfg, 0)

        def not_a_method(name, cfg, num_steps):
          return {"loss": None}

        def vector_loss(name, cfg, num_steps):
          def loss(logits, labels, step, extra=None):
            return losses.cross_entropy(logits[0], labels, reduction="none"), {}
          return Method(name=name, num_members=1, loss=loss)

        def wrong_name(name, cfg, num_steps):
          return build("other", cfg, num_steps)

        def raises(name, cfg, num_steps):
          raise ZeroDivisionError("oops")
        ''',
    "broken_import.py": "import not_a_module_anywhere_xyz\n",
}


def _write_package(root: str, name: str) -> None:
  os.makedirs(os.path.join(root, name))
  for file, text in _PKG.items():
    with open(os.path.join(root, name, file), "w") as f:
      f.write(textwrap.dedent(text))


def _config(model="userpkg.nets:Good", dataset="userpkg.datasets:blobs",
            kind="userpkg.losses:build"):
  config = testing.tiny_config(num_runs=2, num_steps=4, batch_size=8, methods="baseline,mine")
  config.model = ml_collections.ConfigDict(dict(name=model, width=8))
  config.data = ml_collections.ConfigDict(dict(name=dataset, n=40, seed=0))
  config.method_configs.mine = ml_collections.ConfigDict(dict(kind=kind))
  return config


class UserCodeTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    _write_package(cls.root, "userpkg")
    sys.path.insert(0, cls.root)

  @classmethod
  def tearDownClass(cls):
    sys.path.remove(cls.root)
    shutil.rmtree(cls.root)
    super().tearDownClass()

  def test_good_code_passes_and_is_used(self):
    config = _config()
    validate.validate_config(config)
    dataset = data.get_dataset(config.data)
    validate.validate_with_dataset(config, dataset)
    self.assertEqual((dataset.num_train, dataset.num_classes), (40, 3))
    self.assertEqual(dataset.provenance["source"], "import")
    # The provenance hashes the content: other arrays, another fingerprint.
    other = data.get_dataset(ml_collections.ConfigDict(dict(name="userpkg.datasets:blobs",
                                                            n=40, seed=1)))
    self.assertNotEqual(dataset.provenance["sha256"], other.provenance["sha256"])
    model = models.get_model("userpkg.nets:Good", 3, width=8)
    self.assertEqual((type(model).__name__, model.num_classes, model.width), ("Good", 3, 8))
    self.assertFalse(models.uses_convolutions("userpkg.nets:Good"))
    self.assertTrue(models.uses_convolutions("userpkg.nets:Conv"))  # Picks "loop" on CPU.
    method = methods.build("mine", config.method_configs.mine, 4)
    self.assertEqual((method.num_members, method.prediction), (2, "ensemble_mean"))
    source = data.get_dataset(ml_collections.ConfigDict(dict(name="userpkg.datasets:streamed")))
    self.assertEqual((source.name, source.num_train), ("streamed", 40))
    x, y = next(source.train_batches(8, [1, 2]))
    self.assertEqual((x.shape, y.shape), ((2, 8, 5), (2, 8)))
    dict_data = data.get_dataset(ml_collections.ConfigDict(dict(name="userpkg.datasets:as_dict")))
    np.testing.assert_array_equal(dict_data.x_train, dataset.x_train)

  @parameterized.named_parameters(
      ("model_no_module", dict(model="userpkg.nope:Good"), "model.name: .*cannot import"),
      ("model_no_attr", dict(model="userpkg.nets:Missing"), "model.name: .*no attribute"),
      ("model_malformed", dict(model="userpkg.nets:"), "model.name: .*not an import path"),
      ("model_not_module", dict(model="userpkg.nets:NotAModule"),
       "model.name: .*not a flax.linen.Module"),
      ("model_no_num_classes", dict(model="userpkg.nets:NoClasses"),
       "model.name: .*no num_classes"),
      ("model_import_fails", dict(model="userpkg.broken_import:X"),
       "model.name: .*ModuleNotFoundError|model.name: .*cannot import"),
      ("data_no_attr", dict(dataset="userpkg.datasets:nope"), "data.name: .*no attribute"),
      ("data_not_callable", dict(dataset="userpkg.datasets:NOT_CALLABLE"),
       "data.name: .*not a callable"),
      ("data_signature", dict(dataset="userpkg.datasets:no_args"),
       "data.name: .*cannot take"),
      ("kind_no_attr", dict(kind="userpkg.losses:nope"),
       "method_configs.mine.kind: .*no attribute"),
      ("kind_signature", dict(kind="userpkg.losses:two_args"),
       "method_configs.mine.kind: .*cannot take 3"),
      ("kind_not_method", dict(kind="userpkg.losses:not_a_method"),
       "method_configs.mine: .*returned dict, not a churn_jax"),
      ("kind_wrong_name", dict(kind="userpkg.losses:wrong_name"),
       "method_configs.mine: .*named 'other'"),
      ("kind_raises", dict(kind="userpkg.losses:raises"),
       "method_configs.mine: .*ZeroDivisionError: oops"),
  )
  def test_bad_config_is_one_line_naming_the_key(self, overrides, pattern):
    with self.assertRaisesRegex(ValueError, pattern) as cm:
      validate.validate_config(_config(**overrides))
    self.assertNotIn("\n", str(cm.exception))

  @parameterized.named_parameters(
      ("model_wrong_logits", dict(model="userpkg.nets:WrongShape"),
       r"model.name: .*returns \(2, 4\).*expected logits \(2, 3\)"),
      ("model_raises", dict(model="userpkg.nets:Broken"),
       "model.name: .*RuntimeError: forward failed"),
      ("loss_not_scalar", dict(kind="userpkg.losses:vector_loss"),
       r"method_configs.mine.kind: .*loss must return \(scalar"),
  )
  def test_bad_shapes_are_found_before_training(self, overrides, pattern):
    config = _config(**overrides)
    validate.validate_config(config)
    with self.assertRaisesRegex(ValueError, pattern) as cm:
      validate.validate_with_dataset(config, data.get_dataset(config.data))
    self.assertNotIn("\n", str(cm.exception))

  @parameterized.named_parameters(
      ("three_arrays", "three", "data.name 'userpkg.datasets:three': returned tuple"),
      ("missing_key", "missing_key", "returned a dict without y_test"),
      ("raises", "raises", "raised OSError: disk gone"),
      ("bad_source", "bad_source", "returned a source without input_shape, num_train"),
  )
  def test_bad_dataset_return_is_one_line(self, name, pattern):
    with self.assertRaisesRegex(ValueError, pattern) as cm:
      data.get_dataset(ml_collections.ConfigDict(dict(name=f"userpkg.datasets:{name}")))
    self.assertNotIn("\n", str(cm.exception))

  def test_device_setup_does_not_resolve_the_path(self):
    # host_devices asks before validation runs: a bad path must wait for validation's line.
    self.assertFalse(models.splits_batch_on_cpu("userpkg.nope:Good"))

  def test_cli_bad_model_path_exits_1_with_one_line_and_writes_nothing(self):
    workdir = os.path.join(self.root, "never_written")
    config_file = os.path.join(self.root, "bad_config.py")
    with open(config_file, "w") as f:
      f.write("from tests.study.user_code_test import _config\n\n"
              "def get_config():\n  return _config(model='userpkg.nets:WrongShape')\n")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{self.root}")
    proc = subprocess.run(
        [sys.executable, "-m", "churn_jax.cli", "train", f"--config={config_file}",
         f"--workdir={workdir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    lines = [l for l in proc.stderr.splitlines() if not l.startswith(("I", "W"))]
    self.assertLen(lines, 1, proc.stderr[-2000:])
    self.assertRegex(lines[0], r"^error: invalid config: model.name: .*expected logits \(2, 3\)")
    self.assertFalse(os.path.exists(workdir))


if __name__ == "__main__":
  absltest.main()
