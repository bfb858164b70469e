"""Name -> model constructor lookup used by the trainer and configs.

A name with a colon is an import path to the user's own module, e.g. "my_pkg.nets:WideNet":
any flax.linen Module class with a `num_classes` field and `__call__(x, train=...)` returning
logits (B, K). Its class attributes CONVOLUTIONAL and BATCH_NORM (default False) say what the
registry's own table says for the built-in models: CONVOLUTIONAL picks the "loop" strategy on
CPU under `strategy = "auto"`, BATCH_NORM that it keeps a 'batch_stats' collection.
"""

import dataclasses
from typing import Any, NamedTuple, Optional

import flax.linen as nn

from churn_jax.core import import_path
from churn_jax.models.batchensemble import BEMLP, BEWideResNet
from churn_jax.models.conv1d import Conv1DNet
from churn_jax.models.lenet import LeNet5
from churn_jax.models.mlp import MLP
from churn_jax.models.patchnet import PatchNet
from churn_jax.models.resnet_cifar import ResNetCIFAR
from churn_jax.models.resnet_v2 import ResNetV2
from churn_jax.models.wrn import WideResNet


class _Spec(NamedTuple):
  cls: type[nn.Module]
  fixed: dict[str, Any]  # Attributes the name pins (e.g. depth=20).
  convolutional: bool
  batch_norm: bool
  # Measured on CPU: the step runs faster with its batch split over one host device per
  # core than on one device using all cores (churn_jax/runtime/host_devices.py).
  split_batch_on_cpu: bool
  # The registered BatchEnsemble variant of this model (same kwargs plus ensemble_size).
  batch_ensemble: Optional[str] = None


_SPECS: dict[str, _Spec] = {
    'mlp': _Spec(MLP, {}, False, False, False, 'be_mlp'),
    'conv1d': _Spec(Conv1DNet, {}, True, False, False),
    # Allen-Zhu & Li's patch-wise net: an einsum, not a conv op, so vmap suits it on CPU.
    'patchnet': _Spec(PatchNet, {}, False, False, False),
    'lenet5': _Spec(LeNet5, {}, True, False, True),
    'resnet20': _Spec(ResNetCIFAR, {'depth': 20}, True, True, False),
    'resnet32': _Spec(ResNetCIFAR, {'depth': 32}, True, True, False),
    'resnet56': _Spec(ResNetCIFAR, {'depth': 56}, True, True, False),
    'resnet_cifar': _Spec(ResNetCIFAR, {}, True, True, False),
    'resnet_v2_50': _Spec(ResNetV2, {'depth': 50}, True, True, False),
    'wrn': _Spec(WideResNet, {}, True, True, False, 'be_wrn'),
    'wrn28_10': _Spec(WideResNet, {'depth': 28, 'width': 10}, True, True, False, 'be_wrn28_10'),
    # BatchEnsemble models: logits (B, ensemble_size, K) (models/batchensemble.py).
    'be_mlp': _Spec(BEMLP, {}, False, False, False),
    'be_wrn': _Spec(BEWideResNet, {}, True, True, False),
    'be_wrn28_10': _Spec(BEWideResNet, {'depth': 28, 'width': 10}, True, True, False),
}

MODEL_NAMES: tuple[str, ...] = tuple(_SPECS)

# Flax adds these dataclass fields to every Module; they are not model knobs.
_FLAX_FIELDS = frozenset({'parent', 'name', 'num_classes'})


def _import_spec(name: str) -> _Spec:
  """The spec of a user's model class named by import path (module docstring)."""
  cls = import_path.resolve(name)
  if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
    raise ValueError(f'model {name!r} is not a flax.linen.Module class '
                     f'(got {type(cls).__name__})')
  if 'num_classes' not in {f.name for f in dataclasses.fields(cls) if f.init}:
    raise ValueError(f'model {name!r} has no num_classes field; the trainer builds it as '
                     f'{cls.__name__}(num_classes=K, **config.model)')
  return _Spec(cls, {}, bool(getattr(cls, 'CONVOLUTIONAL', False)),
               bool(getattr(cls, 'BATCH_NORM', False)), False)


def _spec(name: str) -> _Spec:
  if import_path.is_import_path(name):
    return _import_spec(name)
  try:
    return _SPECS[name]
  except (KeyError, TypeError):
    raise ValueError(
        f'unknown model {name!r}; known: {", ".join(MODEL_NAMES)}, or an import path '
        f'"package.module:ModuleClass"') from None


def allowed_kwargs(name: str) -> tuple[str, ...]:
  """Keyword arguments that ``get_model(name, ...)`` accepts."""
  spec = _spec(name)
  fields = (f.name for f in dataclasses.fields(spec.cls) if f.init)
  return tuple(f for f in fields
               if f not in _FLAX_FIELDS and f not in spec.fixed)


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """Builds the model registered as ``name`` with ``num_classes`` logits.

  Raises:
    ValueError: unknown name, or a keyword the model does not take (including
      one the name already fixes, e.g. ``depth`` for 'resnet20').
  """
  spec = _spec(name)
  allowed = allowed_kwargs(name)
  for key in kwargs:
    if key not in allowed:
      raise ValueError(
          f'model {name!r} got unexpected keyword argument {key!r}; '
          f'allowed: {", ".join(allowed) or "none"}')
  # Lists (e.g. from JSON/ml_collections) become tuples: Flax module
  # attributes should be hashable so modules can be jit static arguments.
  kwargs = {k: tuple(v) if isinstance(v, list) else v
            for k, v in kwargs.items()}
  return spec.cls(num_classes=num_classes, **spec.fixed, **kwargs)


def uses_convolutions(name: str) -> bool:
  """True if the model has conv layers (the trainer picks a CPU strategy)."""
  return _spec(name).convolutional


def has_batch_norm(name: str) -> bool:
  """True if the model keeps a 'batch_stats' collection."""
  return _spec(name).batch_norm


def batch_ensemble_variant(name: str) -> str:
  """The registered BatchEnsemble version of model ``name`` (e.g. 'wrn28_10' -> 'be_wrn28_10').

  Raises:
    ValueError: ``name`` has no BatchEnsemble variant (one line, naming those that do).
  """
  variant = _spec(name).batch_ensemble
  if variant is None:
    have = ', '.join(n for n, s in _SPECS.items() if s.batch_ensemble)
    raise ValueError(f'model {name!r} has no BatchEnsemble variant; models with one: {have}')
  return variant


def splits_batch_on_cpu(name: str) -> bool:
  """True if, on CPU, the model trains faster on one host device per core."""
  if import_path.is_import_path(name):
    # Not measured for a user's model: one device. Not resolved here either, so that a bad
    # path fails in validation, with its config key, not while the devices are set up.
    return False
  return _spec(name).split_batch_on_cpu
