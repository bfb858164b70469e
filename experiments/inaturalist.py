"""iNaturalist 2018 churn study (8,142 classes) with the ImageNet recipe of Bhojanapalli et al.
2021, App. A.

  python launch/main.py --config=experiments/inaturalist.py --workdir=/tmp/inaturalist \
      --config.data.data_dir=/mnt/bucket/tensorflow_datasets
Arguments (after a colon): `runlocal` (a CPU smoke run of a few seconds at 32x32; meant for
tests under tfds.testing.mock_data), `runs=N`, `validation=N` (hold out the last N train
examples; step counts follow the smaller train set).

Recipe (ImageNet's, as in the paper): ResNet-v2-50 at 224x224, SGD with (non-Nesterov)
momentum 0.9, batch 1024, linear warm-up over 5 epochs to a peak learning rate of 0.8, x0.1
at epochs 30, 60 and 80, 90 epochs. L2 weight decay 1e-4 (the usual ResNet-50 value; the
paper's number was lost). Evaluation on TFDS `validation` (24,426 images; the paper's test
set), center crop 224 of a 256 resize. Normalised with ImageNet's mean and std.
"""

import ml_collections

from churn_jax import config_lib
from churn_jax.data import tfds_source

_DATASET = "i_naturalist2018"


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
      eval_split="",               # '' = validation split; 'heldout' = the held-out.
      image_size=224,
      train_examples=0, eval_examples=0,  # > 0: use only the first N (smoke runs).
      num_workers=32))             # Decoding threads: JPEG decoding is the bottleneck.
  config.model = ml_collections.ConfigDict(dict(name="resnet_v2_50"))
  config.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", momentum=0.9, nesterov=False, weight_decay=1e-4))
  config.batch_size = 1024
  steps_per_epoch = (tfds_source.SPECS[_DATASET].num_train - arg.validation) // config.batch_size
  epochs = lambda e: int(e * steps_per_epoch)
  config.num_train_steps = epochs(90)
  config.lr = ml_collections.ConfigDict(dict(
      base=0.8, warmup_steps=epochs(5), decay_steps=(epochs(30), epochs(60), epochs(80)),
      decay_factor=0.1))

  config.methods = config_lib.DEFAULT_METHODS
  config.method_configs = config_lib.method_configs(
      entropy_beta=0.2, skl_beta=0.2, codistill_beta=1.0, rampup_fraction=0.25)

  config.schurn_alpha = 1.0
  config.eval_batch_size = 250     # Every member predicts the whole eval batch.
  config.strategy = "auto"
  config.log_every_steps = 100
  config.progress = True
  config.checkpoint_every_steps = 2500  # Also saved at the end; resume: churn_jax/checkpoint.py.
  config.checkpoints_to_keep = 2

  if arg.runlocal:
    _runlocal(config)
  return config


def _runlocal(config):
  """Seconds on a CPU: a ResNet-8 on 32x32 crops of a few examples for 3 steps."""
  config.num_runs = 2
  config.data.image_size = 32
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
