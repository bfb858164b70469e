"""SVHN churn study (TFDS svhn_cropped: 73,257 train / 26,032 test digits, no `extra`).

  python launch/main.py --config=experiments/svhn.py --workdir=/tmp/svhn \
      --config.data.data_dir=/mnt/bucket/tensorflow_datasets
Arguments (after a colon): `runlocal` (a CPU smoke run of a few seconds; meant for tests
under tfds.testing.mock_data), `runs=N`, `validation=N` (hold out the last N train
examples; step counts follow the smaller train set).

Model: LeNet-5. The paper gives no SVHN schedule, so this recipe is our choice, not the
paper's: SGD with Nesterov momentum 0.9 and batch 1024 like the CIFAR recipe, linear warm-up
over 5 epochs to 0.1 (LeNet has no BatchNorm and does not tolerate CIFAR's peak of 1.0),
x0.1 at epochs 50 and 75, 100 epochs, L2 weight decay 5e-4 (a small net on a small
dataset). Augmentation: 4-pixel pad and random crop, no flip (digits are not symmetric).
"""

import ml_collections

from churn_jax import config_lib
from churn_jax.data import tfds_source

_DATASET = "svhn_cropped"


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, runs=5, validation=0)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_runs = arg.runs
  config.vary = "init,data"  # Sources of randomness that differ between runs.

  config.data = ml_collections.ConfigDict(dict(
      name=_DATASET,
      data_dir="",                 # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets.
      validation_examples=arg.validation,
      eval_split="",               # '' = test split; 'heldout' = the held-out examples.
      train_examples=0, eval_examples=0,  # > 0: use only the first N (smoke runs).
      num_workers=16))
  config.model = ml_collections.ConfigDict(dict(name="lenet5"))
  config.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4))
  config.batch_size = 1024
  steps_per_epoch = (tfds_source.SPECS[_DATASET].num_train - arg.validation) // config.batch_size
  epochs = lambda e: int(e * steps_per_epoch)
  config.num_train_steps = epochs(100)
  config.lr = ml_collections.ConfigDict(dict(
      base=0.1, warmup_steps=epochs(5), decay_steps=(epochs(50), epochs(75)),
      decay_factor=0.1))

  config.methods = config_lib.DEFAULT_METHODS
  config.method_configs = config_lib.method_configs(
      entropy_beta=0.2, skl_beta=0.2, codistill_beta=1.0, rampup_fraction=0.25)

  config.schurn_alpha = 1.0
  config.eval_batch_size = 2000
  config.strategy = "auto"
  config.log_every_steps = 100
  config.progress = True
  config.checkpoint_every_steps = 1000  # Also saved at the end; resume: churn_jax/checkpoint.py.
  config.checkpoints_to_keep = 2

  if arg.runlocal:
    _runlocal(config)
  return config


def _runlocal(config):
  """Seconds on a CPU: LeNet-5 (already tiny) on a few examples for 3 steps."""
  config.num_runs = 2
  config.batch_size = 8
  config.num_train_steps = 3
  config.lr = ml_collections.ConfigDict(dict(
      base=0.05, warmup_steps=1, decay_steps=(2,), decay_factor=0.1))
  config.data.train_examples = 256
  config.data.eval_examples = 64
  config.data.num_workers = 2
  config.eval_batch_size = 64  # = eval_examples: one eval batch, one compile.
  config.log_every_steps = 1
  config.progress = False
  config.checkpoint_every_steps = 0  # Only the final save.


def get_sweep():
  """Coefficient ranges of Bhojanapalli et al. 2021, App. A, as config overrides.

  The exact grids were lost from the paper's text: beta in {0.1, ..., 0.5} for the entropy
  and symmetric-KL regularisers, {0.5, 1, 2, 3, 4, 5} for co-distillation.
  """
  sweep = [{"methods": "baseline"}]
  for beta in (0.1, 0.2, 0.3, 0.4, 0.5):
    sweep.append({"methods": "entropy", "method_configs.entropy.beta": beta})
    sweep.append({"methods": "skl", "method_configs.skl.beta": beta})
  for beta in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0):
    sweep.append({"methods": "codistill", "method_configs.codistill.beta.value": beta})
  return sweep
