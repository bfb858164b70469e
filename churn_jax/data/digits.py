"""scikit-learn's 8x8 digits: a small image task that ships with sklearn."""

from churn_jax.data.dataset import arrays_sha256, build_dataset, Dataset

NUM_CLASSES = 10
# Pixel values in sklearn's digits are counts in 0..16.
_MAX_PIXEL = 16.0


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
  """Loads digits: x float32 (N, 8, 8, 1) in [0, 1], y int32 in [0, 10).

  The train/test split is stratified by class and deterministic in `seed`.
  """
  # Imported lazily: sklearn is slow to import and only this source needs it.
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top

  test_fraction = float(test_fraction)
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(
        f"digits: test_fraction must be in (0, 1), got {test_fraction}")
  digits = datasets.load_digits()
  x = (digits.images / _MAX_PIXEL).reshape(-1, 8, 8, 1)
  x_train, x_test, y_train, y_test = model_selection.train_test_split(
      x, digits.target, test_size=test_fraction, random_state=int(seed),
      stratify=digits.target)
  provenance = dict(source="digits", test_fraction=test_fraction, seed=int(seed),
                    sha256=arrays_sha256(x_train, y_train, x_test, y_test))
  return build_dataset("digits", x_train, y_train, x_test, y_test,
                       source="digits", num_classes=NUM_CLASSES,
                       provenance=provenance)
