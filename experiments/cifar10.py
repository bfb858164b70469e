"""CIFAR-10 churn study with the recipe of Bhojanapalli et al. 2021, App. A.

  python launch/main.py --config=experiments/cifar10.py --workdir=/tmp/cifar10 \
      --config.data.data_dir=/mnt/bucket/tensorflow_datasets
Arguments (after a colon): `runlocal` (a CPU smoke run of a few seconds: ResNet-8, batch 8,
3 steps; meant for tests under tfds.testing.mock_data), `runs=N`, `validation=N` (hold out
the last N train examples; step counts follow the smaller train set).

Recipe: ResNet-56, SGD with Nesterov momentum 0.9, batch 1024, linear warm-up over 15
epochs to a peak learning rate of 1.0, x0.1 at epochs 200, 300 and 400, 450 epochs. The
paper's L2 weight-decay strength was lost from its text; 1e-4 is the common choice for
CIFAR ResNets. Epochs become steps here: an epoch is floor(num_train / batch_size) steps
(the trainer drops the last partial batch of every epoch).
"""

import ml_collections

from churn_jax import config_lib
from churn_jax.data import tfds_source

_DATASET = "cifar10"


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
      eval_split="",               # '' = test split (the paper's); 'heldout' = the held out.
      train_examples=0, eval_examples=0,  # > 0: use only the first N (smoke runs).
      num_workers=16))
  config.model = ml_collections.ConfigDict(dict(name="resnet56"))
  config.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", momentum=0.9, nesterov=True, weight_decay=1e-4))
  config.batch_size = 1024
  steps_per_epoch = (tfds_source.SPECS[_DATASET].num_train - arg.validation) // config.batch_size
  epochs = lambda e: int(e * steps_per_epoch)
  config.num_train_steps = epochs(450)
  config.lr = ml_collections.ConfigDict(dict(
      base=1.0, warmup_steps=epochs(15), decay_steps=(epochs(200), epochs(300), epochs(400)),
      decay_factor=0.1))

  config.methods = config_lib.DEFAULT_METHODS
  config.method_configs = config_lib.method_configs(
      entropy_beta=0.2, skl_beta=0.2, codistill_beta=1.0, rampup_fraction=0.25)

  config.schurn_alpha = 1.0
  config.eval_batch_size = 1000
  config.strategy = "auto"
  config.log_every_steps = 100
  config.progress = True
  config.checkpoint_every_steps = 1000  # Also saved at the end; resume: churn_jax/checkpoint.py.
  config.checkpoints_to_keep = 2

  if arg.runlocal:
    _runlocal(config)
  return config


def _runlocal(config):
  """Seconds on a CPU: a ResNet-8 on a few examples (real or mock data) for 3 steps."""
  config.num_runs = 2
  config.model = ml_collections.ConfigDict(dict(name="resnet_cifar", depth=8))
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
