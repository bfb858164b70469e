"""`python -m churn_jax.outputs ...` is the `churn-jax` command (churn_jax/outputs/cli.py)."""

from churn_jax.outputs import cli

cli.entry_point()
