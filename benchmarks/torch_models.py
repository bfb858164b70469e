"""churn_jax's models re-implemented layer for layer in torch.nn (NC[H]W), for the benchmarks.

torch_side_by_side.py checks that the parameter counts equal churn_jax's.
"""

from torch import nn
import torch.nn.functional as F


def _bn(channels):
  # Flax BatchNorm momentum 0.9 (weight of the old running average) is torch's 0.1.
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class BasicBlock(nn.Module):
  """churn_jax.models.resnet_cifar.BasicBlock: conv3x3-BN-relu-conv3x3-BN + shortcut, relu."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
    self.bn1 = _bn(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
    self.bn2 = _bn(cout)
    self.proj = None
    if stride != 1 or cin != cout:  # 1x1 conv + BN projection (option B), as in churn_jax.
      self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(y + (x if self.proj is None else self.proj(x)))


def torch_model(name):
  """The churn_jax model `name` (10 classes) in torch.nn, NC[H]W layout."""
  if name == "mlp":  # MLP(hidden=(256, 256)).
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256),
                         nn.ReLU(), nn.Linear(256, 10))
  if name == "conv1d":  # Conv1DNet: 25 channels, kernels 5/3/3, stride 2, padding 1.
    return nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 25, 5, 2, 1), nn.ReLU(),
                         nn.Conv1d(25, 25, 3, 2, 1), nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(5 * 25, 10))  # 40 -> 19 -> 10 -> 5.
  if name == "lenet5":  # SAME 5x5 convs are padding 2; SAME 2x2 pools pad nothing on 32/16.
    return nn.Sequential(nn.Conv2d(3, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 8 * 16, 120), nn.ReLU(),
                         nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
  if name in ("resnet20", "resnet56"):  # ResNetCIFAR(depth=6n+2): n blocks per stage.
    blocks = (int(name[6:]) - 2) // 6
    layers, cin = [nn.Conv2d(3, 16, 3, padding=1, bias=False), _bn(16), nn.ReLU()], 16
    for features, stride in zip((16, 32, 64), (1, 2, 2)):
      for b in range(blocks):
        layers.append(BasicBlock(cin, features, stride if b == 0 else 1))
        cin = features
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)
  raise ValueError(f"no torch model for {name!r}; known: mlp, conv1d, lenet5, resnet20, resnet56")
