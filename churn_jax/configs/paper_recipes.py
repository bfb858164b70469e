"""Training recipes of Bhojanapalli et al. 2021, App. A, for the paper configs in experiments/.

experiments/cifar10.py, cifar100.py, svhn.py, imagenet.py and inaturalist.py are short files
whose `get_config(arg)` and `get_sweep()` call into this module (config files are loaded by
path, so what they share lives in the installed package). Every builder takes the config
file's argument string: `runlocal` (a CPU smoke run of a few seconds; meant for tests under
tfds.testing.mock_data), `runs=N`, `validation=N` (hold out the last N train examples; step
counts follow the smaller train set).

Epochs become steps: an epoch is floor(num_train / batch_size) steps (the trainer drops the
last partial batch of every epoch).

Every method entry of config_lib is in every paper config (`config.methods` picks; the
default is the five core methods), with the paper's distillation temperature of the dataset
(App. A: CIFAR-10 3, CIFAR-100 4, SVHN 4, ImageNet 1, iNaturalist 1) and, on ImageNet and
iNaturalist, the regularisers restricted to the top-k probabilities (Sec. 4). The value of k
is lost from the paper's captured text; k = 10 is our choice.
"""

from typing import Any, Sequence

import ml_collections

from churn_jax.configs import config_lib
from churn_jax.data import tfds_source

_RESNET8 = dict(name="resnet_cifar", depth=8)  # The `runlocal` model of the ResNet recipes.
# Distillation temperature per dataset (Bhojanapalli et al. 2021, App. A table).
KD_TEMPERATURE = {"cifar10": 3.0, "cifar100": 4.0, "svhn_cropped": 4.0, "imagenet2012": 1.0,
                  "i_naturalist2018": 1.0}
TOP_K = 10  # Top-k regularisers on ImageNet and iNaturalist; k lost from the text (our choice).


def _paper_config(dataset: str, arg: str | None, *, model: dict[str, Any], nesterov: bool,
                  weight_decay: float, base_lr: float, warmup_epochs: float,
                  decay_epochs: Sequence[float], num_epochs: float, eval_batch_size: int,
                  image_size: int | None = None, num_workers: int = 16,
                  checkpoint_every_steps: int = 1000,
                  runlocal_model: dict[str, Any] | None = None,
                  runlocal_image_size: int | None = None,
                  top_k: int | None = None, microbatches: int = 1) -> ml_collections.ConfigDict:
  """The config of one paper study: SGD with momentum 0.9, batch 1024, step-decayed lr."""
  arg = config_lib.parse_arg(arg, runlocal=False, runs=5, validation=0)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_runs = arg.runs
  config.vary = "init,data"  # Sources of randomness that differ between runs.

  data = dict(
      name=dataset,
      data_dir="",                 # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets.
      validation_examples=arg.validation,
      eval_split="",               # '' = the paper's test split; 'heldout' = the held-out.
  )
  if image_size is not None:
    data["image_size"] = image_size
  data.update(
      train_examples=0, eval_examples=0,  # > 0: use only the first N (smoke runs).
      num_workers=num_workers)     # Decoding threads (JPEG decoding bounds ImageNet's speed).
  config.data = ml_collections.ConfigDict(data)
  config.model = ml_collections.ConfigDict(dict(model))
  config.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", momentum=0.9, nesterov=nesterov, weight_decay=weight_decay))
  config.batch_size = 1024
  steps_per_epoch = (tfds_source.SPECS[dataset].num_train - arg.validation) // config.batch_size
  epochs = lambda e: int(e * steps_per_epoch)
  config.num_train_steps = epochs(num_epochs)
  config.lr = ml_collections.ConfigDict(dict(
      base=base_lr, warmup_steps=epochs(warmup_epochs),
      decay_steps=tuple(epochs(e) for e in decay_epochs), decay_factor=0.1))

  config.methods = config_lib.DEFAULT_METHODS
  config.method_configs = config_lib.all_method_configs(
      entropy_beta=0.2, skl_beta=0.2, codistill_beta=1.0, rampup_fraction=0.25,
      kd_temperature=KD_TEMPERATURE[dataset], top_k=top_k)

  config.schurn_alpha = 1.0
  config.eval_batch_size = eval_batch_size  # Small for ImageNet: every member predicts it all.
  # Not "auto" (vmap on accelerators): vmap stacks the convolutions of the R x M models into
  # grouped convolutions, which XLA's SPMD partitioner does not split over the batch; on a
  # mesh with a 'data' axis every device then computes the whole batch of its stack
  # (CIFAR-10 on a v3-8: 12.99 and 23.32 GiB per 16 GiB core for M = 1 and 2, 227 and 575
  # all-gathers; benchmarks/paper_scale.py, docs/TPU.md). The loop keeps them plain and split.
  config.strategy = "loop"
  config_lib.set_numerics(config, "bfloat16")
  # Gradient accumulation (a lax.scan over slices of the batch): only one slice's
  # activations are live, so the step fits the accelerator docs/TPU.md recommends.
  config.microbatches = microbatches
  config.cpu_devices = 0  # CPU only; 0 = measured per model (host_devices.py).
  config.compile_cache_dir = "auto"  # Compiled programs reused across runs; "" = off.
  config.plots = True  # False: no WORKDIR/plots (`churn-jax report WORKDIR` draws them later).
  config.log_every_steps = 100
  config.eval_every_steps = 0  # >0: test metrics, churn included, during training (plots).
  config.progress = True
  # Also saved at the end; resume: churn_jax/runtime/checkpoint.py.
  config.checkpoint_every_steps = checkpoint_every_steps
  config.checkpoints_to_keep = 2

  if arg.runlocal:
    runlocal(config, model=runlocal_model, image_size=runlocal_image_size)
  return config


def cifar_config(dataset: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """CIFAR-10 and CIFAR-100 (`dataset`: a TFDS name), the paper's CIFAR recipe.

  ResNet-56, SGD with Nesterov momentum 0.9, batch 1024, linear warm-up over 15 epochs to a
  peak learning rate of 1.0, x0.1 at epochs 200, 300 and 400, 450 epochs. The paper's L2
  weight-decay strength was lost from its text; 1e-4 is the common choice for CIFAR ResNets.
  `runlocal`: a ResNet-8.
  """
  return _paper_config(
      dataset, arg, model=dict(name="resnet56"), nesterov=True, weight_decay=1e-4,
      base_lr=1.0, warmup_epochs=15, decay_epochs=(200, 300, 400), num_epochs=450,
      eval_batch_size=1000, runlocal_model=_RESNET8)


def svhn_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """SVHN (TFDS svhn_cropped) with LeNet-5: our recipe; the paper gives no SVHN schedule.

  SGD with Nesterov momentum 0.9 and batch 1024 like the CIFAR recipe, linear warm-up over 5
  epochs to 0.1 (LeNet has no BatchNorm and does not tolerate CIFAR's peak of 1.0), x0.1 at
  epochs 50 and 75, 100 epochs, L2 weight decay 5e-4. `runlocal` keeps LeNet-5 (already tiny).
  """
  return _paper_config(
      "svhn_cropped", arg, model=dict(name="lenet5"), nesterov=True, weight_decay=5e-4,
      base_lr=0.1, warmup_epochs=5, decay_epochs=(50, 75), num_epochs=100,
      eval_batch_size=2000)


def imagenet_config(dataset: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """ImageNet and iNaturalist 2018 (`dataset`: a TFDS name), the paper's ImageNet recipe.

  ResNet-v2-50 at 224x224, SGD with (non-Nesterov) momentum 0.9, batch 1024, linear warm-up
  over 5 epochs to a peak learning rate of 0.8, x0.1 at epochs 30, 60 and 80, 90 epochs. L2
  weight decay 1e-4 (the usual ResNet-50 value; the paper's number was lost). Evaluation on
  TFDS `validation` (the paper's test set). Regularisers on the top-10 probabilities.
  Gradient accumulation over 32 slices of the batch (BatchNorm sees ghost batches of 32), so
  that the 5-run stack fits a TPU v4-8 (docs/TPU.md). `runlocal`: a ResNet-8 on 32x32 crops.
  """
  return _paper_config(
      dataset, arg, model=dict(name="resnet_v2_50"), nesterov=False, weight_decay=1e-4,
      base_lr=0.8, warmup_epochs=5, decay_epochs=(30, 60, 80), num_epochs=90,
      eval_batch_size=250, image_size=224, num_workers=32, checkpoint_every_steps=2500,
      runlocal_model=_RESNET8, runlocal_image_size=32, top_k=TOP_K, microbatches=32)


def runlocal(config: ml_collections.ConfigDict, model: dict[str, Any] | None = None,
             image_size: int | None = None) -> ml_collections.ConfigDict:
  """Seconds on a CPU: 2 runs, batch 8, 3 steps on a few examples (real or mock data).

  Args:
    config: a paper config, changed in place (and returned).
    model: the model to train instead of the recipe's (None: keep it, e.g. LeNet-5).
    image_size: the crop size instead of the recipe's (None: keep it).
  """
  config.num_runs = 2
  if image_size is not None:
    config.data.image_size = image_size
  if model is not None:
    config.model = ml_collections.ConfigDict(dict(model))
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
  config.compute_dtype = "float32"  # CPU smoke runs: XLA:CPU has no fast bf16 convolutions.
  config.microbatches = 1  # Batch 8: no slices.
  return config


def paper_sweep() -> list[dict[str, Any]]:
  """Coefficient ranges of Bhojanapalli et al. 2021, App. A, as config overrides.

  The exact grids were lost from the paper's text: beta in {0.1, ..., 0.5} for the entropy
  and symmetric-KL regularisers, {0.5, 1, 2, 3, 4, 5} for co-distillation; the regularised
  co-distillation of eq. 19 sweeps the regulariser's weight over the regularisers' range.
  """
  betas = (0.1, 0.2, 0.3, 0.4, 0.5)
  return (config_lib.coefficient_sweep(betas, betas, (0.5, 1.0, 2.0, 3.0, 4.0, 5.0),
                                       with_baseline=True)
          + config_lib.regularized_codistill_sweep(betas, betas))
