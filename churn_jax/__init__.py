"""churn_jax: measure and reduce prediction churn with stacked JAX/Flax training runs.

The public Python API (churn_jax/api.py), loaded on first use so `import churn_jax` costs no
jax import:

  run_study(config, workdir) -> results    load_predictions(workdir, method) -> arrays
  compare(probs_a, probs_b, labels=None)    load_config('file.py[:arg]'), load_results(workdir)
  format_table(results)                     Method (the contract of a method's builder)
"""

__version__ = "0.2.0"

_API = ("run_study", "load_predictions", "load_results", "compare", "load_config",
        "format_table")
__all__ = ["__version__", "Method", *_API]


def __getattr__(name: str):
  # PEP 562: the API modules (and jax with them) load only when a name is first used.
  if name in _API:
    from churn_jax import api  # pylint: disable=import-outside-toplevel
    return getattr(api, name)
  if name == "Method":
    from churn_jax.methods.base import Method  # pylint: disable=import-outside-toplevel
    return Method
  raise AttributeError(f"module 'churn_jax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(__all__))
