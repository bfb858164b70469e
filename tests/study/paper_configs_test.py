"""Tests for the paper configs (experiments/*.py), their sweeps and launch/sweep.py.

The end-to-end runs train the `runlocal` configs under tfds.testing.mock_data in a child
process with XLA's backend optimisations off (XLA_FLAGS, which must be set before JAX starts,
so it cannot go into this process). The train step, predict and init keep their own -O1
(engine/step.py: compiler options override XLA_FLAGS); the flag reaches the other programs
(checkpoint checksums, metrics). Measured on the child alone, an empty compile cache each
(2026-12-05, shared 2-core AMD EPYC): 45.7 CPU-s with the flag, 51.5 without; also patching
the step to -O0: 42.3 and 46.6 (noise), so the step stays as shipped. Of the ~46 s, XLA
compiles took ~20 (62 programs), tracing ~10, plots ~5, imports ~4.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax.data import tfds_source
from tests import testing
from churn_jax.study import validate

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PAPER = ("cifar10", "cifar100", "svhn", "imagenet", "inaturalist")
_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "svhn": "svhn_cropped",
             "imagenet": "imagenet2012", "inaturalist": "i_naturalist2018"}


_load = testing.load_file


sweep_lib = _load("launch/sweep.py", "churn_launch_sweep")
# Every config in experiments/ (mnist1d and later ones too): their sweeps are checked.
_NAMES = [os.path.basename(p)[:-3] for p in glob.glob(os.path.join(_ROOT, "experiments/*.py"))]
_CONFIGS = {name: _load(f"experiments/{name}.py", f"churn_exp_{name}") for name in sorted(_NAMES)}


def _child_env(**extra):
  """Environment of a child process: CPU, XLA backend optimisations off (module docstring)."""
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags.strip(), **extra)


def _flat_keys(config, prefix=""):
  keys = set()
  for key, value in config.items():
    keys.add(prefix + key)
    if hasattr(value, "items"):
      keys |= _flat_keys(value, f"{prefix}{key}.")
  return keys


class PaperConfigTest(absltest.TestCase):

  def test_configs_build_with_the_structure_of_mnist1d(self):
    top = set(_CONFIGS["mnist1d"].get_config().keys())
    data_keys = {"name", "data_dir", "validation_examples", "eval_split", "train_examples",
                 "eval_examples", "num_workers"}
    for name in _PAPER:
      for arg in (None, "runlocal"):
        with self.subTest(name=name, arg=arg):
          config = _CONFIGS[name].get_config(arg)
          self.assertEqual(set(config.keys()), top)
          self.assertContainsSubset(data_keys, set(config.data.keys()))
          self.assertEqual(config.data.name, _DATASETS[name])
          # Methods, model (name and keywords), optimizer, mesh on this host's devices.
          validate.validate_config(config)
          self.assertLess(max(config.lr.decay_steps), config.num_train_steps)
          self.assertLess(config.lr.warmup_steps, min(config.lr.decay_steps))

  def test_paper_recipes_in_steps(self):
    c10 = _CONFIGS["cifar10"].get_config()
    epoch = 50_000 // 1024
    self.assertEqual((c10.model.name, c10.batch_size, c10.lr.base), ("resnet56", 1024, 1.0))
    self.assertEqual(c10.num_train_steps, 450 * epoch)
    self.assertEqual(c10.lr.warmup_steps, 15 * epoch)
    self.assertEqual(tuple(c10.lr.decay_steps), (200 * epoch, 300 * epoch, 400 * epoch))
    self.assertTrue(c10.optimizer.nesterov)
    self.assertEqual((c10.optimizer.momentum, c10.optimizer.weight_decay), (0.9, 1e-4))
    held = _CONFIGS["cifar100"].get_config("validation=5000")
    self.assertEqual(held.num_train_steps, 450 * (45_000 // 1024))
    self.assertEqual(held.data.validation_examples, 5000)

    inet = _CONFIGS["imagenet"].get_config()
    epoch = 1_281_167 // 1024
    self.assertEqual((inet.model.name, inet.batch_size, inet.lr.base),
                     ("resnet_v2_50", 1024, 0.8))
    self.assertFalse(inet.optimizer.nesterov)
    self.assertEqual(inet.num_train_steps, 90 * epoch)
    self.assertEqual(tuple(inet.lr.decay_steps), (30 * epoch, 60 * epoch, 80 * epoch))
    self.assertEqual(inet.lr.warmup_steps, 5 * epoch)
    inat = _CONFIGS["inaturalist"].get_config()
    self.assertEqual(tfds_source.SPECS[inat.data.name].num_classes, 8142)
    self.assertEqual((inat.lr.base, inat.model.name), (0.8, "resnet_v2_50"))
    self.assertEqual(_CONFIGS["svhn"].get_config().model.name, "lenet5")

  def test_runlocal_is_tiny(self):
    for name in _PAPER:
      with self.subTest(name):
        config = _CONFIGS[name].get_config("runlocal")
        self.assertEqual((config.num_runs, config.batch_size), (2, 8))
        self.assertLessEqual(config.num_train_steps, 3)
        self.assertIn(config.model.name, ("resnet_cifar", "lenet5"))
        self.assertLessEqual(config.model.get("depth", 8), 8)

  def test_sweep_keys_exist_and_apply(self):
    self.assertContainsSubset(set(_PAPER) | {"mnist1d"}, set(_CONFIGS))
    for name, module in _CONFIGS.items():
      if not hasattr(module, "get_sweep"):
        continue
      with self.subTest(name):
        config = module.get_config()
        sweep = module.get_sweep()
        self.assertNotEmpty(sweep)
        names = set()
        for overrides in sweep:
          staged = overrides.get(sweep_lib.FROM_SELECTED, {})  # Keys of the method's config.
          self.assertContainsSubset({f"method_configs.{overrides['methods']}.{k}" for k in staged},
                                    _flat_keys(config))
          overrides = {k: v for k, v in overrides.items() if k != sweep_lib.FROM_SELECTED}
          self.assertContainsSubset(set(overrides), _flat_keys(config))
          new = sweep_lib.apply_overrides(config, overrides)
          for key, value in overrides.items():
            self.assertEqual(sweep_lib._lookup(new, key), value)
          for method in str(new.methods).split(","):
            self.assertIn(method, new.method_configs)
          names.add(sweep_lib.entry_name(len(names), overrides))
        self.assertLen(names, len(sweep))
        self.assertEqual(config.to_dict(), module.get_config().to_dict())  # Not mutated.

  def test_every_method_in_every_config_with_the_papers_temperature_and_top_k(self):
    from churn_jax.configs import config_lib  # pylint: disable=g-import-not-at-top
    every = set(config_lib.ALL_METHODS.split(","))
    temperature = {"cifar10": 3.0, "cifar100": 4.0, "svhn": 4.0, "imagenet": 1.0,
                   "inaturalist": 1.0}  # Bhojanapalli et al. 2021, App. A.
    for name, module in _CONFIGS.items():
      if not hasattr(module, "get_config"):
        continue
      with self.subTest(name):
        config = module.get_config()
        self.assertContainsSubset(every, set(config.method_configs))
        if name not in _PAPER:
          continue
        config.methods = config_lib.ALL_METHODS
        validate.validate_config(config)  # Every entry builds.
        kd = config.method_configs.ens_distill
        self.assertEqual(kd.temperature, temperature[name])
        for ods in ("ods_distill", "ods_conf_distill", "noise_distill"):
          self.assertEqual(config.method_configs[ods].temperature, temperature[name])
        top_k = 10 if name in ("imagenet", "inaturalist") else None
        for reg in ("entropy", "skl", "codistill_entropy", "codistill_skl"):
          self.assertEqual(config.method_configs[reg].top_k, top_k, reg)

  def test_paper_sweep_ranges(self):
    for name in _PAPER:
      sweep = _CONFIGS[name].get_sweep()
      betas = lambda key: sorted(o[key] for o in sweep if key in o)
      self.assertEqual(betas("method_configs.entropy.beta"), [0.1, 0.2, 0.3, 0.4, 0.5])
      self.assertEqual(betas("method_configs.skl.beta"), [0.1, 0.2, 0.3, 0.4, 0.5])
      self.assertEqual(betas("method_configs.codistill.beta.value"), [0.5, 1, 2, 3, 4, 5])
      self.assertEqual(betas("method_configs.codistill_skl.skl_beta.value"),
                       [0.1, 0.2, 0.3, 0.4, 0.5])  # Eq. 19: the regulariser's range.

  def test_unknown_override_fails_in_one_line(self):
    config = _CONFIGS["cifar10"].get_config()
    for key in ("method_configs.skl.betta", "optimiser.momentum", "data.name.x", "data"):
      with self.subTest(key):
        with self.assertRaises(ValueError) as cm:
          sweep_lib.apply_overrides(config, {key: 1})
        self.assertNotIn("\n", str(cm.exception))
        self.assertIn(repr(key), str(cm.exception))
    self.assertNotIn("betta", config.method_configs.skl)

  def test_sweep_cli_prints_one_tpu_command_per_entry(self):
    out = subprocess.run(
        [sys.executable, os.path.join(_ROOT, "launch/sweep.py"),
         "--config=experiments/svhn.py", "--workdir=gs://bucket/churn/svhn",
         "--mode=print_tpu_commands"],
        cwd=_ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.strip().splitlines()
    self.assertLen(lines, len(_CONFIGS["svhn"].get_sweep()))
    self.assertTrue(all(l.startswith("TPU_NAME=churn-svhn-") and " launch/tpu_vm.sh all " in l
                        for l in lines))
    self.assertIn("--config.method_configs.skl.beta=0.3", out)
    self.assertIn("--workdir=gs://bucket/churn/svhn/00_baseline", lines[0])


# A tiny study on scikit-learn's digits (offline) for launch/sweep.py's sequential mode.
_TINY_SWEEP_CONFIG = """
from tests import testing

def get_config(arg=None):
  config = testing.tiny_config(num_runs=2, num_steps=2, methods="baseline")
  config.data = dict(name="digits", npz_path="")
  return config

def get_sweep():
  return [{"methods": "baseline"}, {"methods": "entropy", "method_configs.entropy.beta": 0.3}]
"""


class SweepSequentialTest(absltest.TestCase):

  def sweep(self, config_text: str, workdir: str):
    path = os.path.join(workdir, "tiny_config.py")
    with open(path, "w") as f:
      f.write(config_text)
    return subprocess.run(
        [sys.executable, "launch/sweep.py", f"--config={path}",
         f"--workdir={workdir}/sweep"], cwd=_ROOT, capture_output=True, text=True,
        timeout=240, env=_child_env(PYTHONPATH=_ROOT))

  def test_runs_every_entry_into_its_folder_then_skips_them(self):
    workdir = tempfile.mkdtemp(prefix="churn_jax_sweep_")
    self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    proc = self.sweep(_TINY_SWEEP_CONFIG, workdir)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    with open(f"{workdir}/sweep/01_entropy_beta=0.3/results.json") as f:
      results = json.load(f)
    self.assertEqual(list(results["methods"]), ["entropy"])
    self.assertEqual(results["config"]["method_configs"]["entropy"]["beta"], 0.3)
    self.assertTrue(os.path.exists(f"{workdir}/sweep/00_baseline/results.json"))
    again = self.sweep(_TINY_SWEEP_CONFIG, workdir)
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertEqual(again.stderr.count("already done"), 2)

  def test_unknown_sweep_key_fails_before_training(self):
    workdir = tempfile.mkdtemp(prefix="churn_jax_sweep_")
    self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    bad = _TINY_SWEEP_CONFIG.replace("entropy.beta", "entropy.betta")
    proc = self.sweep(bad, workdir)
    self.assertEqual(proc.returncode, 1)
    error = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(error, 1)
    self.assertIn("unknown config key 'method_configs.entropy.betta'", error[0])
    self.assertFalse(os.path.exists(f"{workdir}/sweep"))


# Runs in one child process (see the module docstring) for every study of RunlocalTrainingTest,
# so tensorflow, tfds and jax are imported once; prints each study's results as JSON.
_TRAIN = """
import importlib.util, json, sys
import tensorflow_datasets as tfds
from churn_jax.study import train
for name, path, methods, workdir in json.loads(sys.argv[1]):
  spec = importlib.util.spec_from_file_location("cfg_" + name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("runlocal")
  config.methods = methods
  config.strategy = "vmap"  # One traced model: compiles faster than "loop" on CPU.
  config.plots = False  # Not read here (~5 CPU-s of the child); plots_switch_test covers them.
  with tfds.testing.mock_data(num_examples=48):
    results = train.train_and_evaluate(config, workdir)
  print(f"RESULTS {name}=" + json.dumps(results["methods"], default=str), flush=True)
"""

# Table 2's co-distillation, 2-ensemble distillation and Anil et al. rows, Table 6's ensemble
# (cifar10), and a regulariser (svhn).
# One program per member count and stage on the ResNet (each ResNet-8 program costs seconds
# of compile): an independent ensemble (M=2, own data), its distilled student (M=1, a
# teacher on augmented images) and co-distillation (M=2, joint); the baseline and the other
# losses are the same programs up to the loss, trained on the LeNet (svhn) and digits.
_STUDIES = {"cifar10": "ensemble2,ens_distill,codistill",
            "svhn": "baseline,skl"}


class RunlocalTrainingTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(prefix="churn_jax_runlocal_")
    studies = [(name, os.path.join(_ROOT, f"experiments/{name}.py"), methods,
                os.path.join(cls.tmp, name)) for name, methods in _STUDIES.items()]
    cls.proc = subprocess.run([sys.executable, "-c", _TRAIN, json.dumps(studies)], cwd=_ROOT,
                              env=_child_env(), capture_output=True, text=True, timeout=1800)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def train(self, name: str, methods: str):
    self.assertEqual(methods, _STUDIES[name])
    lines = [l for l in self.proc.stdout.splitlines() if l.startswith(f"RESULTS {name}=")]
    self.assertTrue(lines, self.proc.stderr[-3000:])
    results = json.loads(lines[-1].split("=", 1)[1])
    self.assertEqual(sorted(results), sorted(methods.split(",")))
    for entry in results.values():
      self.assertEqual(entry["num_runs"], 2)
      self.assertBetween(entry["accuracy"]["mean"], 0.0, 1.0)
      self.assertBetween(entry["churn"]["mean"], 0.0, 1.0)
    self.assertTrue(os.path.exists(os.path.join(self.tmp, name, "results.md")))
    return results

  def test_child_exits_cleanly(self):
    self.assertEqual(self.proc.returncode, 0, self.proc.stderr[-3000:])

  def test_cifar10_runlocal_trains_codistillation_ensembles_and_distillation(self):
    results = self.train("cifar10", "ensemble2,ens_distill,codistill")
    self.assertEqual(results["codistill"]["num_members"], 2)
    self.assertEqual(results["ensemble2"]["num_members"], 2)
    self.assertEqual(results["ens_distill"]["training_cost"], 3.0)

  def test_svhn_runlocal_trains_baseline_and_regularizer(self):
    results = self.train("svhn", "baseline,skl")
    self.assertTrue(np.isfinite(results["skl"]["ece"]["mean"]))


if __name__ == "__main__":
  absltest.main()
