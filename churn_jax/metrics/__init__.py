"""Churn and calibration metrics: probabilities in, scalars out.

Every function takes *probabilities* (e.g. softmax outputs), never logits:
``probs`` arrays have shape ``(N, K)`` (N examples, K classes) with
non-negative rows summing to 1, and ``labels`` are integer arrays of shape
``(N,)`` with values in ``[0, K)``. Inputs may be ``np.ndarray`` or
``jax.Array``; the computations use ``jax.numpy`` so every function can be
wrapped in ``jax.jit`` and returns ``jnp`` scalars (or dicts of them). Input
validation raises ``ValueError`` and runs only when the inputs are concrete; it
is skipped for JAX tracers (i.e. inside ``jit``), where values are unknown.
Shapes are contracts as well: chex asserts them where the jitted kernels start
(inputs) and where the public functions return (scalar results), at trace time.

Definitions follow Bhojanapalli et al. 2021, "On the Reproducibility of Neural
Network Predictions" (arXiv:2102.03349):

* Churn between models a and b is the fraction of examples on which their
  top-1 predictions differ::

      Churn(a, b) = 1/N sum_n 1[argmax_k p_a[n, k] != argmax_k p_b[n, k]].

* The surrogate churn ``SChurn_alpha`` is a smooth relaxation of churn. Each
  row is divided by its own maximum and raised to the power ``alpha``::

      SChurn_alpha(a, b) = 1/(2N) sum_n || (p_a[n] / max_k p_a[n, k])^alpha
                                         - (p_b[n] / max_k p_b[n, k])^alpha ||_1

  As ``alpha -> inf`` each normalised row tends to the one-hot vector of its
  argmax, so ``SChurn_alpha -> Churn`` when argmaxes are unique.

* Churn on slices restricts churn to the examples a reference model classifies
  correctly (resp. incorrectly); see ``churn_on_slices`` for how the two
  possible reference models are combined.

* Prediction difference (also from the paper) compares the full probability
  vectors rather than only their argmax: mean L1, mean L2 and a mean relative
  difference ``2|p_a - p_b| / (p_a + p_b)``.

* Expected calibration error (ECE) uses equal-width confidence bins, as in
  Guo et al. 2017, "On Calibration of Modern Neural Networks".

* The Brier score is the multi-class form of Brier 1950 as Nam et al. 2021
  ("Diversity Matters When Learning From Ensembles") report it: the mean over
  examples of ``sum_k (p[n, k] - 1[k = y_n])^2`` (in [0, 2]), not divided by K.

``pairwise`` and ``per_run`` summarise a metric over R replicate runs, the
setting in which churn is measured (independently trained copies of a model).
"""

from churn_jax.metrics.two_model import (
    churn,
    surrogate_churn,
    churn_on_slices,
    prediction_difference,
)
from churn_jax.metrics.single import (
    accuracy,
    negative_log_likelihood,
    entropy,
    confidence_gap,
    expected_calibration_error,
    brier_score,
)
from churn_jax.metrics.summary import pairwise, per_run

__all__ = [
    "accuracy", "brier_score", "churn", "churn_on_slices", "confidence_gap", "entropy",
    "expected_calibration_error", "negative_log_likelihood", "pairwise", "per_run",
    "prediction_difference", "surrogate_churn",
]
