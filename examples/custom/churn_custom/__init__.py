"""A user's own package for churn_jax: a model, a dataset and a method, none inside churn_jax.

The config (examples/custom/config.py) names them by import path; churn_jax imports them when
this directory is on PYTHONPATH (or the package is installed: `pip install examples/custom`).
"""
