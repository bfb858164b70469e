"""Layers shared by the ResNets: He-normal bias-free convolutions and BatchNorm."""

import functools

import flax.linen as nn

conv_init = nn.initializers.he_normal()
# Convolutions are followed by BatchNorm, whose shift makes a bias redundant.
conv = functools.partial(nn.Conv, use_bias=False, kernel_init=conv_init)


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)
