"""`python -m churn_jax.cli ...` is the `churn-jax` command (churn_jax/cli/command.py)."""

from churn_jax.cli import command as cli

cli.entry_point()
