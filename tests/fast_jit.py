"""jax.jit for the tests' small programs (a loss, its gradient), compiled cheaply on CPU.

A test's CPU time is nearly all XLA compiling. Run eagerly, a loss compiles one program per
primitive and shape (~25-60 ms each); jitted with XLA:CPU's defaults, one program, but one
that costs nearly as much. These settings change code generation only, not what is computed:
-O0, the elemental emitters instead of the fusion emitters, and one LLVM module (no codegen
threads on a 2-core machine). Three 3-member losses and their gradients, fresh processes
(`python benchmarks/loss_compile_cost.py`; AMD EPYC, 2 cores, shared and loaded; 33 s wall):
eager 3.18 CPU-s (104 programs), jit 2.64, jit with the train step's options 2.40, these
0.60 (3 programs). tests/conftest.py gives the same options to the trainer's step (engine/
step.py: $CHURN_JAX_CPU_COMPILER_OPTIONS) and, as XLA_FLAGS, to every other program of a test
run; here they also hold where conftest.py did not set them (a test file run alone with
absltest, or with the shipped options asked for). A jaxlib without one of these options
fails each caller with "No such compile option": drop it here.

Only an outermost jit takes compiler options: a function that JAX differentiates or traces
further (jax.test_util.check_grads, a jit inside another) takes a plain jax.jit.
"""

import functools

import jax

CPU_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False,
               "xla_cpu_parallel_codegen_split_count": 1}
# XLA's own defaults for the same options (xla/debug_options_flags.cc). tests/conftest.py sets
# CPU_OPTIONS as XLA_FLAGS for every program of a test run, so a test about what a user's
# process compiles passes these back explicitly (compile options override XLA_FLAGS).
XLA_DEFAULTS = {"xla_backend_optimization_level": 3, "xla_cpu_use_fusion_emitters": True,
                "xla_cpu_parallel_codegen_split_count": 32}


def shipped_step_options() -> dict:
  """engine/step.py's CPU options as a user's process compiles them (no XLA_FLAGS)."""
  from churn_jax.engine import step  # pylint: disable=g-import-not-at-top
  return {**XLA_DEFAULTS, **step.CPU_COMPILER_OPTIONS}


def jit(fun, **kwargs):
  """jax.jit(fun) with CPU_OPTIONS on CPU, the backend's defaults elsewhere. The backend is
  asked at the first call, so a module may define these at import without starting JAX."""
  jitted = None

  @functools.wraps(fun)
  def call(*args, **call_kwargs):
    nonlocal jitted
    if jitted is None:
      options = dict(CPU_OPTIONS) if jax.default_backend() == "cpu" else None
      jitted = jax.jit(fun, compiler_options=options, **kwargs)
    return jitted(*args, **call_kwargs)

  return call
