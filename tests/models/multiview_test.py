"""The multi-view generator against its definition, the patch-wise net, the slice report."""

import functools

from absl.testing import absltest
import jax
import numpy as np

from churn_jax import data as data_lib, models
from churn_jax.data import multiview
from churn_jax.models import patchnet
from tests import testing

_load = functools.cache(testing.load_file)


_SMALL = dict(num_classes=4, dim=24, num_patches=8, patches_per_view=2, num_train=60,
              num_test=40, train_single_view_fraction=0.25, test_single_view_fraction=0.5,
              view_weight=(1.0, 1.5), weak_view_weight=(0.1, 0.2), feature_noise_prob=0.3,
              feature_noise_weight_multi=(0.1, 0.4), feature_noise_weight_single=(0.05, 0.1),
              patch_mix=0.0, seed=3)


class GeneratorTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.clean = multiview.generate(noise_std=0.0, **_SMALL)

  def test_views_orthonormal(self):
    v = self.clean.views.reshape(-1, _SMALL["dim"])
    np.testing.assert_allclose(v @ v.T, np.eye(len(v)), atol=1e-10)

  def _projections(self, ds, split):
    """(N, k, 2) total weight of each view in an example: sum over patches of <x_p, v>."""
    x = getattr(ds, f"x_{split}").astype(np.float64)
    return np.einsum("npd,kld->nkl", x, ds.views)

  def test_class_views_present_as_defined(self):
    for split in ("train", "test"):
      proj = self._projections(self.clean, split)
      y = getattr(self.clean, f"y_{split}")
      single = getattr(self.clean, f"single_view_{split}")
      view = getattr(self.clean, f"view_{split}")
      own = proj[np.arange(len(y)), y]  # (N, 2)
      lo, hi = _SMALL["view_weight"]
      wlo, whi = _SMALL["weak_view_weight"]
      tol = 1e-5  # float32 storage
      multi = ~single
      self.assertTrue(np.all((own[multi] >= lo - tol) & (own[multi] <= hi + tol)))
      strong = own[single, view[single]]
      weak = own[single, 1 - view[single]]
      self.assertTrue(np.all((strong >= lo - tol) & (strong <= hi + tol)))
      self.assertTrue(np.all((weak >= wlo - tol) & (weak <= whi + tol)))

  def test_feature_noise_from_other_classes(self):
    proj = self._projections(self.clean, "train")
    y, single = self.clean.y_train, self.clean.single_view_train
    other = proj.copy()
    other[np.arange(len(y)), y] = 0.0
    tol = 1e-5
    for mask, (lo, hi) in ((~single, _SMALL["feature_noise_weight_multi"]),
                           (single, _SMALL["feature_noise_weight_single"])):
      values = other[mask].ravel()
      present = np.abs(values) > tol
      self.assertTrue(present.any())  # Some feature noise was drawn (probability 0.3).
      self.assertTrue(np.all((values[present] >= lo - tol) & (values[present] <= hi + tol)))

  def test_each_feature_in_its_own_patches(self):
    x = self.clean.x_train.astype(np.float64)
    coef = np.einsum("npd,kld->npkl", x, self.clean.views).reshape(len(x), 8, -1)
    nonzero = np.abs(coef) > 1e-6
    # patch_mix = 0: a patch holds at most one feature, a feature exactly patches_per_view
    # patches, and without noise x lies in the span of the views.
    self.assertTrue(np.all(nonzero.sum(-1) <= 1))
    counts = nonzero.sum(1)
    self.assertTrue(np.all((counts == 0) | (counts == _SMALL["patches_per_view"])))
    recon = np.einsum("npf,fd->npd", coef, self.clean.views.reshape(-1, _SMALL["dim"]))
    np.testing.assert_allclose(recon, x, atol=1e-5)

  def test_gaussian_noise_scale(self):
    sigma = 0.3
    ds = multiview.generate(noise_std=sigma, **dict(_SMALL, num_train=400))
    x = ds.x_train.astype(np.float64)
    flat = ds.views.reshape(-1, _SMALL["dim"])
    residual = x - np.einsum("npd,fd,fe->npe", x, flat, flat)  # Off the views' span.
    dof = _SMALL["dim"] - len(flat)
    std = np.sqrt(np.sum(residual ** 2) / (x.shape[0] * x.shape[1] * dof))
    self.assertAlmostEqual(std, sigma, delta=0.03 * sigma)

  def test_slice_labels(self):
    for split, frac in (("train", 0.25), ("test", 0.5)):
      single = getattr(self.clean, f"single_view_{split}")
      view = getattr(self.clean, f"view_{split}")
      n = len(single)
      self.assertEqual(int(single.sum()), round(frac * n))
      np.testing.assert_array_equal(view == -1, ~single)
      self.assertTrue(set(np.unique(view[single])) <= {0, 1})

  def test_deterministic_in_seed(self):
    a = multiview.generate(noise_std=0.1, **_SMALL)
    b = multiview.generate(noise_std=0.1, **_SMALL)
    c = multiview.generate(noise_std=0.1, **dict(_SMALL, seed=4))
    for field in ("x_train", "y_train", "x_test", "single_view_test", "views"):
      np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    self.assertFalse(np.array_equal(a.x_train, c.x_train))

  def test_bad_parameters_fail(self):
    with self.assertRaisesRegex(ValueError, "orthonormal"):
      multiview.generate(**dict(_SMALL, dim=7))
    with self.assertRaisesRegex(ValueError, "weak_view_weight"):
      multiview.generate(**dict(_SMALL, weak_view_weight=(0.3, 0.1)))

  def test_config_reaches_generator(self):
    config = _load("experiments/multiview.py").get_config("quick")
    unknown = set(config.data) - set(multiview.CONFIG_KEYS) - {"name", "npz_path"}
    self.assertEqual(unknown, set())  # Every data key is a generator argument.
    ds = data_lib.get_dataset(config.data)
    self.assertIsInstance(ds, multiview.MultiViewDataset)
    self.assertEqual(ds.input_shape, (config.data.num_patches, config.data.dim))
    self.assertEqual(int(ds.single_view_test.sum()),
                     round(config.data.test_single_view_fraction * config.data.num_test))


class PatchNetTest(absltest.TestCase):

  def test_smoothed_relu_by_hand(self):
    q, rho = 3.0, 0.5
    z = np.array([-1.0, 0.0, 0.25, 0.5, 2.0])
    expected = [0.0, 0.0, 0.25 ** 3 / (3 * 0.5 ** 2), 0.5 - (2 / 3) * 0.5, 2.0 - (2 / 3) * 0.5]
    np.testing.assert_allclose(patchnet.smoothed_relu(z, q, rho), expected, rtol=1e-6)
    grad = jax.vmap(jax.grad(lambda u: patchnet.smoothed_relu(u, q, rho)))
    np.testing.assert_allclose(grad(np.array([rho - 1e-4, rho + 1e-4])), [1.0, 1.0], atol=1e-3)

  def test_forward_matches_numpy(self):
    model = models.get_model("patchnet", 3, filters_per_class=2, q=3.0, rho=0.2, init_std=0.5)
    x = np.random.default_rng(0).normal(size=(5, 4, 6)).astype(np.float32)
    variables = model.init(jax.random.PRNGKey(0), x)
    w = np.asarray(variables["params"]["filters"], np.float64)
    self.assertEqual(w.shape, (3, 2, 6))
    pre = np.einsum("bpd,krd->bkrp", x, w)
    act = np.where(pre >= 0.2, pre - (2 / 3) * 0.2, np.clip(pre, 0, None) ** 3 / (3 * 0.04))
    np.testing.assert_allclose(model.apply(variables, x), act.sum((2, 3)), rtol=1e-5, atol=1e-6)


class SlicesTest(absltest.TestCase):

  def test_slice_values_hand_made(self):
    slices = _load("experiments/multiview_slices.py")
    labels = np.array([0, 1, 0, 1])
    single = np.array([True, True, False, False])
    pred = np.array([[0, 1, 0, 1], [1, 0, 0, 1]])  # Run 1 wrong on both single-view examples.
    probs = np.eye(2)[pred]
    v = slices.slice_values(probs, labels, single)
    np.testing.assert_allclose(v["single"]["accuracy"], [1.0, 0.0])
    np.testing.assert_allclose(v["multi"]["accuracy"], [1.0, 1.0])
    np.testing.assert_allclose(v["all"]["accuracy"], [1.0, 0.5])
    self.assertAlmostEqual(v["all"]["churn_matrix"][0, 1], 0.5)
    self.assertAlmostEqual(v["single"]["churn_matrix"][0, 1], 1.0)
    self.assertAlmostEqual(v["multi"]["churn_matrix"][1, 0], 0.0)
    self.assertAlmostEqual(v["single"]["churn_matrix"][1, 1], 0.0)

  def test_views_learned_hand_made(self):
    slices = _load("experiments/multiview_slices.py")
    views = np.eye(8)[:4].reshape(2, 2, 8)  # 2 classes x 2 views in R^8
    w = np.zeros((1, 2, 2, 3, 8))  # (R, M, k, m, d)
    w[0, 0, 0, 0] = views[0, 0]  # member 0 learns class 0 view 0
    w[0, 1, 0, 2] = views[0, 1]  # member 1 learns class 0 view 1: the pair has both
    w[0, 0, 1, 1] = 0.5 * views[1, 0]  # class 1: one view, below rho = 0.8
    both, one = slices.views_learned({"filters": w}, views, rho=0.8)
    np.testing.assert_allclose(both, [0.5])
    np.testing.assert_allclose(one, [0.5])


class EndToEndTest(absltest.TestCase):

  def test_quick_config_trains_every_method(self):
    """The config's four methods through train_method and the per-slice report."""
    config = _load("experiments/multiview.py").get_config("quick")
    config.num_train_steps = 4
    config.progress = False
    slices = _load("experiments/multiview_slices.py")
    dataset = data_lib.get_dataset(config.data)
    out = slices.run_methods(config, dataset)
    self.assertEqual(list(out), ["baseline", "ensemble4", "ens_distill", "self_distill"])
    table, dump = slices.report(config, dataset, out, num_resamples=5)
    for name in out:
      self.assertIn(f"| {name} |", table)
    probs = out["ensemble4"][0]
    self.assertEqual(probs.shape, (2, config.data.num_test, config.data.num_classes))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    acc = dump["methods"]["baseline"]["single"]["accuracy"]
    pred = out["baseline"][0].argmax(-1)
    single = dataset.single_view_test
    np.testing.assert_allclose(acc, (pred[:, single] == dataset.y_test[single]).mean(-1))


if __name__ == "__main__":
  absltest.main()
