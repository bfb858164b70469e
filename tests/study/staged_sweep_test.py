"""Two-stage sweeps (App. A: eq. 19 at co-distillation's selected beta) and a resumed sweep
training the coefficient of each point, not of its position in the to-do list."""

import tempfile

from absl.testing import absltest

from churn_jax.configs import config_lib
from churn_jax.study import sweep_stages, sweeps
from tests import testing


def _entry(churn, val_churn, value, method="codistill"):
  return {"churn": {"mean": churn}, "validation": {"churn": {"mean": val_churn}},
          "sweep": {"method": method, "key": "beta.value", "value": value}}


class StagesTest(absltest.TestCase):

  def test_spec_and_entries_declare_the_stage(self):
    s = sweeps.parse_sweeps("codistill:beta.value=0.5,1;"
                            "codistill_entropy:entropy_beta.value=0.1:beta.value<codistill")
    self.assertEqual(s[1].fixed_from, (("beta.value", "codistill"),))
    self.assertEqual(sweep_stages.stages(s), [[s[0]], [s[1]]])
    with self.assertRaisesRegex(ValueError, "key<source_method"):
      sweeps.parse_sweeps("skl:beta=0.1:beta")
    entries = (config_lib.coefficient_sweep((), (), (0.5, 1.0))
               + config_lib.regularized_codistill_sweep((0.1, 0.2), (0.01,)))
    _, grouped = sweeps.from_overrides(entries)
    self.assertEqual([g.method for g in sweep_stages.stages(grouped)[1]],
                     ["codistill_entropy", "codistill_skl"])
    self.assertEqual(grouped[1].fixed_from, (("beta.value", "codistill"),))
    with self.assertRaisesRegex(ValueError, "not a sweep of this study"):
      sweep_stages.stages(grouped[1:])
    loop = [sweeps.Sweep("a", "x", (1.0,), (("y", "b"),)),
            sweeps.Sweep("b", "x", (1.0,), (("y", "a"),))]
    with self.assertRaisesRegex(ValueError, "cycle"):
      sweep_stages.stages(loop)

  def test_resolve_takes_the_selected_point_of_the_split(self):
    config = testing.tiny_config()
    config.method_configs = config_lib.all_method_configs(0.2, 0.05, 1.0, 0.5)
    results = {"methods": {"codistill@beta=0.5": _entry(0.02, 0.01, 0.5),
                           "codistill@beta=2": _entry(0.01, 0.03, 2.0),
                           "baseline": {"churn": {"mean": 0.0}}}}
    sweep = sweeps.Sweep("codistill_entropy", "entropy_beta.value", (0.1,),
                         (("beta.value", "codistill"),))
    for split, value in (("validation", 0.5), ("test", 2.0)):
      out, resolved = sweep_stages.resolve_fixed(config, sweep, results, split)
      self.assertEqual(out.method_configs.codistill_entropy.beta.value, value)
      self.assertEqual(resolved.fixed, (("beta.value", value, "codistill",
                                         f"codistill@beta={value:g}", split),))
      self.assertEqual(config.method_configs.codistill_entropy.beta.value, 1.0)  # A copy.

  def test_second_stage_trains_at_the_selected_value(self):
    config = testing.tiny_config(num_runs=2, num_steps=4, methods="baseline")
    s = sweeps.parse_sweeps("codistill:beta.value=0.5,0.2;"
                            "codistill_entropy:entropy_beta.value=0.1:beta.value<codistill")
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
      results = sweep_stages.train_staged(config, d1, s, ["baseline"], validation_fraction=0.2)
      rows = [(results["methods"][p]["validation"]["churn"]["mean"], v)
              for p, v in zip(s[0].points, s[0].values)]
      chosen = min(rows)[1]
      fixed = results["methods"]["codistill_entropy@entropy_beta=0.1"]["sweep"]["fixed"]
      self.assertEqual(fixed["beta.value"]["value"], chosen)
      self.assertEqual(results["stages"], [["codistill"], ["codistill_entropy"]])
      # The same point as a one-stage study with that beta in its config: the same numbers.
      alone = config.copy_and_resolve_references()
      alone.method_configs.codistill_entropy.beta.value = chosen
      one = sweeps.train_study(alone, d2, [sweeps.Sweep(s[1].method, s[1].key, s[1].values)],
                               validation_fraction=0.2)
    name = "codistill_entropy@entropy_beta=0.1"
    for key in ("accuracy", "churn", "nll"):
      self.assertEqual(results["methods"][name][key], one["methods"][name][key], key)
    self.assertEqual(results["methods"][name]["fingerprint"], one["methods"][name]["fingerprint"])


class ResumedSweepTest(absltest.TestCase):

  def test_a_resumed_sweep_trains_each_points_own_value(self):
    # The first point finished earlier; the to-do list is [1]: its value is values[1].
    config = testing.tiny_config(num_runs=2, num_steps=4, methods="baseline")
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
      sweeps.train_study(config, d1, [sweeps.Sweep("entropy", "beta", (0.1,))])
      resumed = sweeps.train_study(config, d1, [sweeps.Sweep("entropy", "beta", (0.1, 0.9))])
      alone = sweeps.train_study(config, d2, [sweeps.Sweep("entropy", "beta", (0.9,))])
    for key in ("accuracy", "entropy", "nll"):
      self.assertEqual(resumed["methods"]["entropy@beta=0.9"][key],
                       alone["methods"]["entropy@beta=0.9"][key], key)


if __name__ == "__main__":
  absltest.main()
