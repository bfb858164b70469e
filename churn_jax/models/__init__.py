"""Model zoo: Flax linen classifiers returning float32 logits (B, classes).

BatchEnsemble models (names 'be_*') return (B, ensemble_size, classes): one set of
parameters, several members (models/batchensemble.py).

Every model is called as ``model.apply(variables, x, train=...)``; models
with BatchNorm keep running statistics in the 'batch_stats' collection.
"""

from churn_jax.models.batchensemble import BEMLP, BEWideResNet
from churn_jax.models.conv1d import Conv1DNet
from churn_jax.models.lenet import LeNet5
from churn_jax.models.mlp import MLP
from churn_jax.models.registry import (batch_ensemble_variant, get_model, has_batch_norm,
                                       MODEL_NAMES, splits_batch_on_cpu, uses_convolutions)
from churn_jax.models.resnet_cifar import ResNetCIFAR
from churn_jax.models.resnet_v2 import ResNetV2
from churn_jax.models.wrn import WideResNet

__all__ = [
    'BEMLP',
    'BEWideResNet',
    'Conv1DNet',
    'LeNet5',
    'MLP',
    'MODEL_NAMES',
    'ResNetCIFAR',
    'ResNetV2',
    'WideResNet',
    'batch_ensemble_variant',
    'get_model',
    'has_batch_norm',
    'splits_batch_on_cpu',
    'uses_convolutions',
]
