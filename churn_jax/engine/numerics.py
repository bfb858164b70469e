"""How the stacked step computes: activation dtype, matmul precision, rematerialisation,
gradient accumulation and steps per dispatch (built from the config by study/settings.py).

Mixed precision keeps the float32 "master" parameters: the stack casts parameters and inputs
to `compute_dtype` inside the differentiated function, so gradients, optimizer state and
updates stay float32, and BatchNorm statistics (not cast) stay float32. Logits leave every
model as float32, so the loss, the softmax and every metric are float32.
"""

import contextlib
import dataclasses

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Names jax.default_matmul_precision accepts; "default" leaves the backend's choice (TF32
# inside float32 matmuls on recent NVIDIA GPUs, bf16 passes on TPU).
MATMUL_PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")


@dataclasses.dataclass(frozen=True)
class Numerics:
  compute_dtype: str = "float32"
  matmul_precision: str = "default"
  remat: bool = False       # Recompute activations in the backward pass (jax.checkpoint).
  microbatches: int = 1     # Gradient accumulation: the batch in this many equal slices.
  steps_per_loop: int = 1   # Train steps inside one jitted program (lax.scan).

  @property
  def dtype(self):
    return COMPUTE_DTYPES[self.compute_dtype]

  def matmul_context(self):
    """The matmul precision while a step is traced (the precision is fixed at trace time)."""
    if self.matmul_precision == "default":
      return contextlib.nullcontext()
    return jax.default_matmul_precision(self.matmul_precision)


def cast_floating(tree, dtype):
  """Every floating leaf of `tree` cast to `dtype` (differentiable: gradients come back in
  the leaves' own dtype)."""
  return jax.tree_util.tree_map(
      lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
