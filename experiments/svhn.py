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

from churn_jax.configs import paper_recipes


def get_config(arg=None):
  return paper_recipes.svhn_config(arg)


def get_sweep():
  """The paper's coefficient ranges (churn_jax/configs/paper_recipes.py: paper_sweep)."""
  return paper_recipes.paper_sweep()
