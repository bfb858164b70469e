"""Shared helpers for the model tests: small input shapes and cheap init/apply."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np

from churn_jax.engine import step

# Small inputs keep the model tests fast on a shared 2-core CPU.
MNIST1D = (4, 40)
DIGITS = (4, 8, 8, 1)
CIFAR = (2, 32, 32, 3)


def init(model, shape, seed=0):
  """Real random init, compiled as one program (cheaper than eager init) with the step's XLA
  options, as the trainer compiles it (at XLA:CPU's default -O2 a ResNet's init took seconds)."""
  return jax.jit(model.init, compiler_options=step.compiler_options())(
      jax.random.key(seed), jnp.zeros(shape))


def abstract_init(model, shape):
  """Variables' shapes only: no FLOPs, so ResNet-56/50 stay cheap."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0),
                                           jnp.zeros(shape, jnp.float32)))


def filled_init(model, shape, seed=0):
  """Init-shaped variables filled from numpy.

  Compiling jax.random for every kernel shape costs seconds per model on a
  busy CPU; forward-pass tests only need some finite values. BatchNorm
  running stats get their real initial values (mean 0, var 1).
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    key = jax.tree_util.keystr(path)
    if key.endswith("['mean']"):
      return np.zeros(leaf.shape, leaf.dtype)
    if key.endswith("['var']"):
      return np.ones(leaf.shape, leaf.dtype)
    return (0.2 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill,
                                          abstract_init(model, shape))


@functools.lru_cache(maxsize=None)
def jitted_apply(model, train, mutable):
  return jax.jit(functools.partial(model.apply, train=train, mutable=mutable),
                 compiler_options=step.compiler_options())


def apply(model, variables, x, train=False, mutable=False):
  """Jitted model.apply: one compile beats op-by-op eager dispatch, and the
  cache lets tests that share a model and mode share the compile."""
  mutable = tuple(mutable) if isinstance(mutable, list) else mutable
  return jitted_apply(model, train, mutable)(variables, x)


def num_params(variables):
  return sum(int(np.prod(x.shape))
             for x in jax.tree_util.tree_leaves(variables['params']))


def flat(params):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(params))


def conv_kernels(params, spatial):
  """Conv kernels (4-D) whose spatial shape is ``spatial``, e.g. (3, 3)."""
  return {k: v for k, v in flat(params).items()
          if k[-1] == 'kernel' and v.ndim == 4 and v.shape[:2] == spatial}
