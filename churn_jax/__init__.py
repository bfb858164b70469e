"""churn_jax: measure and reduce prediction churn with stacked JAX/Flax training runs."""

__version__ = "0.1.0"
