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

from churn_jax.configs import paper_recipes


def get_config(arg=None):
  return paper_recipes.cifar_config("cifar10", arg)


def get_sweep():
  """The paper's coefficient ranges (churn_jax/configs/paper_recipes.py: paper_sweep)."""
  return paper_recipes.paper_sweep()
