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
Memory: the loop strategy and 32 micro-batches (gradient accumulation), so that the step fits
a TPU v4-8 (docs/TPU.md, "Does each paper config fit"); BatchNorm sees ghost batches of 32.
"""

from churn_jax.configs import paper_recipes


def get_config(arg=None):
  return paper_recipes.imagenet_config("i_naturalist2018", arg)


def get_sweep():
  """The paper's coefficient ranges (churn_jax/configs/paper_recipes.py: paper_sweep)."""
  return paper_recipes.paper_sweep()
