"""Model zoo: Flax linen classifiers returning float32 logits (B, classes).

Every model is called as ``model.apply(variables, x, train=...)``; models
with BatchNorm keep running statistics in the 'batch_stats' collection.
"""

from churn_jax.models.conv1d import Conv1DNet
from churn_jax.models.lenet import LeNet5
from churn_jax.models.mlp import MLP
from churn_jax.models.registry import get_model
from churn_jax.models.registry import has_batch_norm
from churn_jax.models.registry import MODEL_NAMES
from churn_jax.models.registry import splits_batch_on_cpu
from churn_jax.models.registry import uses_convolutions
from churn_jax.models.resnet_cifar import ResNetCIFAR
from churn_jax.models.resnet_v2 import ResNetV2

__all__ = [
    'Conv1DNet',
    'LeNet5',
    'MLP',
    'MODEL_NAMES',
    'ResNetCIFAR',
    'ResNetV2',
    'get_model',
    'has_batch_norm',
    'splits_batch_on_cpu',
    'uses_convolutions',
]
