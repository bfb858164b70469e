"""The method lists of issue 25: Nam et al.'s setting, anti-distillation's control, App. C's
ramp-up pairs, and eq. 19's second stage; every entry builds and says what the papers say."""

from absl.testing import absltest

from churn_jax import methods
from churn_jax.configs import config_lib
from churn_jax.core import schedules


class RecipesTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.cfgs = config_lib.all_method_configs(0.1, 0.01, 1.0, perturb_step=1.0, noise_std=1.0)

  def test_nam_setting(self):
    names = config_lib.NAM_METHODS.split(",")
    students = [n for n in names if n.startswith("nam_")]
    self.assertLen(students, 4 + len(config_lib.NAM_ETAS))
    perturbations, etas = set(), set()
    for name in students:
      cfg = self.cfgs[name]
      self.assertEqual((cfg.kind, cfg.teacher, cfg.ensemble_size, cfg.alpha, cfg.temperature),
                       ("be_distill", "ensemble4", 4, 0.9, 1.0), name)
      self.assertEqual(self.cfgs[cfg.teacher].num_members, 4)
      perturbations.add(cfg.get("perturbation", "none"))
      if cfg.get("perturbation") == "ods":
        etas.add(cfg.step_size)
      m = methods.build(name, cfg, 100)
      self.assertEqual((m.teacher, m.model_ensemble_size), ("ensemble4", 4))
    self.assertEqual(perturbations, {"none", "ods", "ods_confidence", "gaussian"})
    self.assertEqual(etas, {1.0, *config_lib.NAM_ETAS})

  def test_rampup_pairs_differ_in_the_ramp_only(self):
    for linear, step in (("codistill", "codistill_step"), ("codistill_ce_linear", "codistill_ce")):
      a, b = self.cfgs[linear].to_dict(), self.cfgs[step].to_dict()
      self.assertEqual(a.pop("beta")["kind"], "linear_rampup")
      self.assertEqual(b.pop("beta")["kind"], "step_burnin")
      self.assertEqual(a, b)
      fn = schedules.from_config(self.cfgs[linear].beta, 100)
      self.assertLess(float(fn(10)), float(fn(30)))  # Ramps up linearly ...
      fn = schedules.from_config(self.cfgs[step].beta, 100)
      self.assertEqual(float(fn(10)), 0.0)  # ... against a step after the burn-in.
      self.assertEqual(float(fn(30)), 1.0)

  def test_eq19_is_a_second_stage_of_codistill(self):
    for entry in config_lib.regularized_codistill_sweep((0.1,), (0.01,)):
      self.assertEqual(entry["from_selected"], {"beta.value": "codistill"})
    self.assertNotIn("from_selected", config_lib.regularized_codistill_sweep((0.1,), (), False)[0])


if __name__ == "__main__":
  absltest.main()
