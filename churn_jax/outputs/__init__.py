"""The output layer beside the trainer: predictions files, tables, plots, TensorBoard events,
`compare` and `report` (the `churn-jax` command: cli.py). Nothing here imports the trainer."""
