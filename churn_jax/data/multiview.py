"""Allen-Zhu & Li 2020's multi-view data (arXiv 2012.09816, Sec. 3), generated offline.

Each class j owns two "views" v_{j,1}, v_{j,2}: 2k orthonormal vectors in R^d. An example is
P patches x_1..x_P in R^d (input shape (P, d)). Its label y is uniform over the k classes and
its feature set V(X) holds its class's views plus "feature noise": every view of every other
class independently with probability `feature_noise_prob` (kept only while free patches
remain: at most P // C_p features in all). Each feature v in V(X) occupies
`patches_per_view` = C_p patches of its own (disjoint), and there
    x_p = z_p v + sum_{v' in V(X), v' != v} alpha_{p,v'} v' + xi_p,
with alpha in [0, patch_mix] and xi_p ~ N(0, noise_std^2 I_d); the remaining patches hold only
the alpha mixture and the Gaussian noise. The weights z_p are a random (Dirichlet) split of a
total drawn per feature:
  - multi-view example: both class views with a total in `view_weight` (paper: [1, O(1)]),
    feature noise with a total in `feature_noise_weight_multi` (paper: [Omega(1), 0.4]);
  - single-view example: one class view l (uniform) with a total in `view_weight`, the other
    with a total in `weak_view_weight` (paper: [rho, O(rho)]), feature noise with a total in
    `feature_noise_weight_single` (paper: [Omega(Gamma), Gamma], Gamma = 1/polylog k).
A fraction `*_single_view_fraction` of each split is single-view (paper: mu = 1/poly(k) in
training). The slice of every example is kept: `single_view_*` (bool) and `view_*` (the view
present in a single-view example, -1 for multi-view), so metrics can be computed per slice.

The paper's constants are asymptotic in k (rho = k^-0.01 is ~1 at k = 10); here every one is a
parameter, and docs/MULTIVIEW.md records the values where its effect shows.
"""

import dataclasses
import inspect
from typing import Optional

import numpy as np

from churn_jax.data.dataset import build_dataset, Dataset

NUM_VIEWS = 2  # Views per class, as in the paper.


@dataclasses.dataclass(frozen=True, eq=False)
class MultiViewDataset(Dataset):
  """A Dataset plus the slice of each example and the views that generated it."""
  single_view_train: Optional[np.ndarray] = None  # (N_train,) bool
  single_view_test: Optional[np.ndarray] = None   # (N_test,) bool
  view_train: Optional[np.ndarray] = None  # (N_train,) int8: present view, -1 = multi-view
  view_test: Optional[np.ndarray] = None
  views: Optional[np.ndarray] = None  # (k, 2, d) orthonormal features


def _range(value, name):
  lo, hi = (float(v) for v in value)
  if not 0.0 <= lo <= hi:
    raise ValueError(f"multiview: {name} must be a range 0 <= lo <= hi, got {tuple(value)}")
  return lo, hi


def make_views(num_classes: int, dim: int, rng: np.random.Generator) -> np.ndarray:
  """(k, 2, d) orthonormal views: the Q factor of a Gaussian (d, 2k) matrix."""
  q, r = np.linalg.qr(rng.normal(size=(dim, num_classes * NUM_VIEWS)))
  q = q * np.sign(np.diag(r))  # A unique Q (Haar distributed), independent of LAPACK signs.
  return q.T.reshape(num_classes, NUM_VIEWS, dim)


def _split_weight(total, count, rng):
  """`total` split over `count` patches with uniform (Dirichlet(1)) proportions."""
  return total * rng.dirichlet(np.ones(count))


def sample_split(views: np.ndarray, num_examples: int, single_view_fraction: float,
                 rng: np.random.Generator, *, num_patches: int, patches_per_view: int,
                 view_weight, weak_view_weight, feature_noise_prob: float,
                 feature_noise_weight_multi, feature_noise_weight_single, patch_mix: float,
                 noise_std: float):
  """Examples of one split: x (N, P, d) float32, y (N,), single_view (N,), view (N,)."""
  num_classes, _, dim = views.shape
  flat_views = views.reshape(num_classes * NUM_VIEWS, dim)
  max_features = num_patches // patches_per_view
  num_single = int(round(single_view_fraction * num_examples))
  single = np.zeros(num_examples, bool)
  single[rng.permutation(num_examples)[:num_single]] = True
  y = rng.integers(0, num_classes, size=num_examples)
  view = np.where(single, rng.integers(0, NUM_VIEWS, size=num_examples), -1)
  x = np.zeros((num_examples, num_patches, dim))
  for n in range(num_examples):
    # Feature noise: every view of every other class with probability feature_noise_prob.
    others = [c * NUM_VIEWS + l for c in range(num_classes) if c != y[n]
              for l in range(NUM_VIEWS) if rng.random() < feature_noise_prob]
    rng.shuffle(others)
    others = others[:max_features - NUM_VIEWS]  # Only as many as there are free patches.
    own = [y[n] * NUM_VIEWS + l for l in range(NUM_VIEWS)]
    if single[n]:
      totals = [rng.uniform(*view_weight) if l == view[n] else rng.uniform(*weak_view_weight)
                for l in range(NUM_VIEWS)]
      noise_range = feature_noise_weight_single
    else:
      totals = [rng.uniform(*view_weight) for _ in range(NUM_VIEWS)]
      noise_range = feature_noise_weight_multi
    totals += [rng.uniform(*noise_range) for _ in others]
    features = own + others
    coef = np.zeros((num_patches, len(flat_views)))  # Coefficient of each view in each patch.
    present = np.zeros(len(flat_views), bool)
    present[features] = True
    # Small mixture of the example's other features in every patch (alpha in [0, patch_mix]).
    coef[:, present] = rng.uniform(0.0, patch_mix, size=(num_patches, len(features)))
    patches = rng.permutation(num_patches)
    for i, (f, total) in enumerate(zip(features, totals)):
      ps = patches[i * patches_per_view:(i + 1) * patches_per_view]
      coef[ps, f] = _split_weight(total, patches_per_view, rng)
    x[n] = coef @ flat_views + noise_std * rng.normal(size=(num_patches, dim))
  return x.astype(np.float32), y.astype(np.int32), single, view.astype(np.int8)


def generate(num_classes: int = 10, dim: int = 100, num_patches: int = 10,
             patches_per_view: int = 1, num_train: int = 1000, num_test: int = 1000,
             train_single_view_fraction: float = 0.05, test_single_view_fraction: float = 0.5,
             view_weight=(1.0, 1.5), weak_view_weight=(0.1, 0.2), feature_noise_prob: float = 0.1,
             feature_noise_weight_multi=(0.1, 0.4), feature_noise_weight_single=(0.05, 0.1),
             patch_mix: float = 0.0, noise_std: float = 0.1, seed: int = 0) -> MultiViewDataset:
  """Generates the multi-view dataset (module docstring); deterministic in `seed`.

  Views, train split and test split use independent streams of `seed`, so changing the size
  of one split does not change the other or the views.
  """
  if num_classes < 2 or dim < NUM_VIEWS * num_classes:
    raise ValueError(f"multiview: need num_classes >= 2 and dim >= {NUM_VIEWS} * num_classes "
                     f"(orthonormal views), got {num_classes}, {dim}")
  if patches_per_view < 1 or num_patches < NUM_VIEWS * patches_per_view:
    raise ValueError(f"multiview: need num_patches >= {NUM_VIEWS} * patches_per_view >= "
                     f"{NUM_VIEWS}, got {num_patches}, {patches_per_view}")
  for name, frac in (("train_single_view_fraction", train_single_view_fraction),
                     ("test_single_view_fraction", test_single_view_fraction),
                     ("feature_noise_prob", feature_noise_prob)):
    if not 0.0 <= float(frac) <= 1.0:
      raise ValueError(f"multiview: {name} must be in [0, 1], got {frac}")
  if noise_std < 0 or patch_mix < 0:
    raise ValueError(f"multiview: noise_std and patch_mix must be >= 0, got {noise_std}, "
                     f"{patch_mix}")
  kwargs = dict(num_patches=int(num_patches), patches_per_view=int(patches_per_view),
                view_weight=_range(view_weight, "view_weight"),
                weak_view_weight=_range(weak_view_weight, "weak_view_weight"),
                feature_noise_prob=float(feature_noise_prob),
                feature_noise_weight_multi=_range(feature_noise_weight_multi,
                                                  "feature_noise_weight_multi"),
                feature_noise_weight_single=_range(feature_noise_weight_single,
                                                   "feature_noise_weight_single"),
                patch_mix=float(patch_mix), noise_std=float(noise_std))
  streams = np.random.SeedSequence(int(seed)).spawn(3)
  views = make_views(int(num_classes), int(dim), np.random.default_rng(streams[0]))
  train = sample_split(views, int(num_train), float(train_single_view_fraction),
                       np.random.default_rng(streams[1]), **kwargs)
  test = sample_split(views, int(num_test), float(test_single_view_fraction),
                      np.random.default_rng(streams[2]), **kwargs)
  base = build_dataset("multiview", train[0], train[1], test[0], test[1], source="multiview",
                       num_classes=int(num_classes))
  fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Dataset)}
  return MultiViewDataset(**fields, single_view_train=train[2], single_view_test=test[2],
                          view_train=train[3], view_test=test[3], views=views)


# The data-config keys `generate` reads (churn_jax/data/__init__.py passes exactly these).
CONFIG_KEYS = tuple(inspect.signature(generate).parameters)
