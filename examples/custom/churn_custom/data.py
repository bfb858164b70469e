"""The user's dataset function: returns arrays; churn_jax orders batches per run itself."""

import numpy as np


def load(num_train: int = 600, num_test: int = 300, num_classes: int = 3, dim: int = 8,
         noise: float = 1.5, seed: int = 0):
  """Gaussian blobs: one random centre per class in `dim` dimensions, isotropic `noise`.

  Called by churn_jax with every field of config.data except `name` as keywords. The noise
  makes the classes overlap, so replicate runs disagree on the ambiguous points (churn > 0).
  """
  rng = np.random.default_rng(seed)
  centres = rng.normal(0.0, 2.0, (num_classes, dim))

  def sample(n):
    y = rng.integers(0, num_classes, n)
    return (centres[y] + noise * rng.normal(size=(n, dim))).astype(np.float32), y

  x_train, y_train = sample(num_train)
  x_test, y_test = sample(num_test)
  mean, std = x_train.mean(0), x_train.std(0)  # Standardised with the training split's stats.
  x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
  return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
          "num_classes": num_classes}
