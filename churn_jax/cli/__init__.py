"""The command line: `churn-jax` and the flag handling the launch scripts share."""
