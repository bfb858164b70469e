"""Member diversity (Nam et al.'s KLD, top-1 disagreement) and where its arrays come from."""

import os
import tempfile

from absl.testing import absltest
import numpy as np
from scipy import stats

from churn_jax.outputs import predictions
from churn_jax.protocol import diversity


def np_kld(members):
  """Loops as in the authors' compute_kld: ordered pairs i != j, KL(p_j || p_i) per example."""
  runs, size = members.shape[:2]
  out = []
  for r in range(runs):
    total = [np.mean([stats.entropy(members[r, j, n], members[r, i, n])
                      for n in range(members.shape[2])])
             for i in range(size) for j in range(size) if i != j]
    out.append(np.mean(total))
  return np.array(out)


class MeasureTest(absltest.TestCase):

  def test_kld_against_loops(self):
    rng = np.random.default_rng(0)
    members = rng.dirichlet(np.ones(5), size=(3, 4, 7))  # R 3, E 4, N 7, K 5
    np.testing.assert_allclose(diversity.pairwise_kl(members), np_kld(members), rtol=1e-9)

  def test_kld_by_hand(self):
    # Two members on one example: KL(p||q) + KL(q||p) over the 2 ordered pairs.
    p, q = np.array([0.75, 0.25]), np.array([0.5, 0.5])
    expected = 0.5 * ((0.75 * np.log(1.5) + 0.25 * np.log(0.5))
                      + (0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(2.0)))
    np.testing.assert_allclose(diversity.pairwise_kl(np.array([[[p], [q]]])), [expected])
    same = np.tile(p, (2, 3, 4, 1))
    np.testing.assert_allclose(diversity.pairwise_kl(same), [0.0, 0.0], atol=1e-12)

  def test_disagreement_by_hand(self):
    eye = np.eye(3)
    # Run 0: members predict classes [0,1,2,0], [0,1,1,0], [2,1,1,0] on 4 examples.
    # Pairs (0,1): 1 of 4 differ; (0,2): 2; (1,2): 1 -> mean 4/12.
    run0 = eye[[[0, 1, 2, 0], [0, 1, 1, 0], [2, 1, 1, 0]]] * 0.8 + 0.1 / 3
    run1 = eye[[[0, 0, 0, 0]] * 3] * 0.8 + 0.1 / 3  # identical members
    np.testing.assert_allclose(diversity.pairwise_disagreement(np.stack([run0, run1])),
                               [4 / 12, 0.0])

  def test_bad_shapes(self):
    for bad in (np.ones((2, 3, 4)), np.ones((2, 1, 3, 4))):
      with self.assertRaisesRegex(ValueError, r"\(R, E >= 2, N, K\)"):
        diversity.pairwise_kl(bad)


class WiringTest(absltest.TestCase):
  """Which array of which predictions file lands in which row."""

  def test_study_rows_read_each_methods_members(self):
    rng = np.random.default_rng(1)
    runs, n, k = 2, 6, 4
    labels = rng.integers(0, k, n)
    teacher = rng.dirichlet(np.ones(k), size=(runs, 4, n))          # (R, M=4, N, K)
    student = rng.dirichlet(np.ones(k) * 5, size=(runs, 1, n, 4))  # (R, M=1, N, E=4, K)
    single = rng.dirichlet(np.ones(k), size=(runs, 1, n))
    with tempfile.TemporaryDirectory() as tmp:
      results = {"methods": {
          "baseline": {"predictions": predictions.save(
              tmp, "baseline", single[:, 0], single, labels, range(runs), "member0")},
          "ensemble4": {"predictions": predictions.save(
              tmp, "ensemble4", teacher.mean(1), teacher, labels, range(runs),
              "ensemble_mean")},
          "be": {"predictions": predictions.save(
              tmp, "be", student[:, 0].mean(2), student, labels, range(runs), "member0")}}}
      saved = predictions.load(os.path.join(tmp, "predictions/be.npz"))
      self.assertNotIn("members", saved)
      np.testing.assert_array_equal(saved["model_members"],
                                    np.moveaxis(student, 3, 2).astype(np.float32))
      rows = {r["method"]: r for r in diversity.study_rows(tmp, results)}
      self.assertEqual(sorted(rows), ["be", "ensemble4"])  # The single model has no row.
      f32 = lambda a: a.astype(np.float32)
      for name, members in (("ensemble4", f32(teacher)),
                            ("be", f32(np.moveaxis(student[:, 0], 2, 1)))):
        kld, dis = diversity.pairwise_kl(members), diversity.pairwise_disagreement(members)
        self.assertEqual((rows[name]["members"], rows[name]["runs"]), (4, runs))
        np.testing.assert_allclose(rows[name]["kld"], (kld.mean(), kld.std()), rtol=1e-6)
        np.testing.assert_allclose(rows[name]["disagreement"], (dis.mean(), dis.std()))
      self.assertNotAlmostEqual(rows["be"]["kld"][0], rows["ensemble4"]["kld"][0], places=3)
      table = diversity.rows_markdown(list(rows.values()), teacher="ensemble4")
      self.assertIn(f"| ensemble4 (teacher) | 4 | 2 | {rows['ensemble4']['kld'][0]:.4f} ± "
                    f"{rows['ensemble4']['kld'][1]:.4f} | "
                    f"{100 * rows['ensemble4']['disagreement'][0]:.2f} ± ", table)
      self.assertIn(f"| be | 4 | 2 | {rows['be']['kld'][0]:.4f}", table)

  def test_against_reference_is_paired_t_with_holm(self):
    rows = [{"method": m, "members": 4, "runs": 5, "kld": (float(np.mean(v)), 0.0),
             "disagreement": (0.0, 0.0), "kld_values": v}
            for m, v in (("kd", [0.040, 0.050, 0.045, 0.038, 0.052]),
                         ("ods", [0.030, 0.041, 0.036, 0.027, 0.040]),
                         ("gauss", [0.041, 0.049, 0.046, 0.039, 0.050]))]
    got = diversity.against(rows, "kd")
    p = {m: stats.ttest_rel(rows[i]["kld_values"], rows[0]["kld_values"]).pvalue
         for i, m in ((1, "ods"), (2, "gauss"))}
    lo, hi = sorted(p, key=p.get)
    holm = {lo: 2 * p[lo], hi: max(2 * p[lo], p[hi])}
    for m in ("ods", "gauss"):
      self.assertAlmostEqual(got[m]["p_value"], p[m], places=10)
      self.assertAlmostEqual(got[m]["p_holm"], min(1.0, holm[m]), places=10)
    self.assertAlmostEqual(got["ods"]["diff"], np.mean(rows[1]["kld_values"]) - 0.045)
    self.assertEqual(got["ods"]["verdict"], "reversed")  # Less diverse than the reference.
    table = diversity.rows_markdown(rows, reference="kd")
    self.assertIn("| kd | 4 | 5 | 0.0450 ± 0.0000 | 0.00 ± 0.00 | - |", table)
    self.assertIn("| ods | 4 | 5 | 0.0348 ± 0.0000 | 0.00 ± 0.00 | -10.20 [", table)

  def test_deployed_members_by_prediction(self):
    models = np.arange(2 * 2 * 3 * 5 * 4, dtype=np.float32).reshape(2, 2, 3, 5, 4)
    # member0 with M = 2 BE models: only model 0's E = 3 members are deployed.
    np.testing.assert_array_equal(
        predictions.deployed_members({"model_members": models, "prediction": "member0"}),
        models[:, 0])
    np.testing.assert_array_equal(
        predictions.deployed_members({"model_members": models,
                                      "prediction": "ensemble_mean"}).shape, (2, 6, 5, 4))
    stack = models[:, :, 0]
    self.assertIsNone(predictions.deployed_members({"members": stack, "prediction": "member0"}))
    self.assertIs(predictions.deployed_members({"members": stack,
                                                "prediction": "ensemble_mean"}), stack)
    # A file written before model_members existed (a BE student's deployed mean only).
    self.assertIsNone(predictions.deployed_members({"deployed": stack[:, 0],
                                                    "prediction": "member0"}))


class MergedWorkdirsTest(absltest.TestCase):
  """experiments/nam_diversity.py: rows from several workdirs, the first one's on a clash."""

  def test_first_workdir_wins_and_reference_is_required(self):
    import json  # pylint: disable=g-import-not-at-top
    from experiments import nam_diversity  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 5)
    ens = lambda: rng.dirichlet(np.ones(3), size=(3, 2, 5))
    with tempfile.TemporaryDirectory() as tmp:
      made = {}
      for workdir, names in (("a", ("kd", "ods")), ("b", ("ods", "eta4"))):
        results = {"methods": {}}
        for name in names:
          members = ens()
          made[(workdir, name)] = members.astype(np.float32)
          results["methods"][name] = {"predictions": predictions.save(
              os.path.join(tmp, workdir), name, members.mean(1), members, labels, range(3),
              "ensemble_mean")}
        with open(os.path.join(tmp, workdir, "results.json"), "w") as f:
          json.dump(results, f)
      dirs = [os.path.join(tmp, "a"), os.path.join(tmp, "b")]
      text = nam_diversity.table(dirs, "none", "kd")
      names = [l.split(" | ")[0][2:] for l in text.splitlines()[2:]]
      self.assertEqual(names, ["kd", "ods", "eta4"])
      ods = diversity.pairwise_kl(made[("a", "ods")])
      self.assertIn(f"| ods | 2 | 3 | {ods.mean():.4f} ± {ods.std():.4f} |", text)
      with self.assertRaisesRegex(ValueError, "reference 'x' has no member predictions"):
        nam_diversity.table(dirs, "none", "x")


if __name__ == "__main__":
  absltest.main()
