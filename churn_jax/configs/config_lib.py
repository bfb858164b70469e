"""Helpers shared by the experiment configs in experiments/ (argument strings, method entries).

Config files take an argument string, big_vision style: `--config=experiments/mnist1d.py:quick`
or `...:methods=baseline+codistill,runs=3`. `parse_arg` turns it into a ConfigDict.
"""

from typing import Any

import ml_collections

DEFAULT_METHODS = "baseline,entropy,skl,codistill,codistill_entropy"
# The `:all` study: every method of the seed papers, on the same runs.
ALL_METHODS = (DEFAULT_METHODS + ",codistill_skl,codistill_ce,codistill_ce_stale,mutual,codistill3,"
               "ensemble2,ensemble4,ens_distill,self_distill,anti_distill,ods_distill,"
               "ods_conf_distill,noise_distill")


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses "a,b=1,c=x" into {a: True, b: 1, c: 'x'}; keys must be among `defaults`."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; known: {', '.join(sorted(defaults))}")
    default = defaults[key]
    if not sep:
      out[key] = True
    elif isinstance(default, bool):
      out[key] = value.lower() in ("1", "true", "yes")
    elif isinstance(default, int):
      out[key] = int(value)
    elif isinstance(default, float):
      out[key] = float(value)
    else:
      out[key] = value
  return out


VARY_SOURCES = ("init", "data")


def vary_set(config) -> set:
  """The sources of randomness that differ between runs (`config.vary`, default both)."""
  vary = {v.strip() for v in str(config.get("vary", "init,data")).split(",") if v.strip()}
  unknown = vary - set(VARY_SOURCES)
  if unknown:
    raise ValueError(f"vary: unknown source(s) {sorted(unknown)}; known: init, data")
  return vary


def set_numerics(config: ml_collections.ConfigDict, compute_dtype: str) -> None:
  """How the stacked step computes (engine/numerics.py; built by study/settings.py): float32
  for the offline CPU configs, bfloat16 activations (float32 weights and metrics) for the
  paper configs on accelerators."""
  config.compute_dtype = compute_dtype  # float32 | bfloat16
  config.matmul_precision = "default"  # jax.default_matmul_precision of the step
  config.remat = False  # Recompute activations in the backward pass (memory, same values)
  config.microbatches = 1  # Gradient accumulation over this many slices of the batch
  config.steps_per_loop = 1  # Train steps per dispatch (lax.scan); events at block ends.
  config.profile_steps = ""  # "N:K": jax.profiler trace of steps N..N+K-1 (WORKDIR/profile)


def rampup(value: float, fraction: float) -> ml_collections.ConfigDict:
  """A coefficient linearly ramped up over the first `fraction` of training."""
  return ml_collections.ConfigDict(dict(kind="linear_rampup", value=value, rampup_fraction=fraction,
                                        rampup_steps=None))


def method_configs(entropy_beta: float, skl_beta: float, codistill_beta: float,
                   rampup_fraction: float = 0.25, top_k=None) -> ml_collections.ConfigDict:
  """Entries for the five core methods of Bhojanapalli et al. 2021.

  The regularised co-distillation ramps both coefficients linearly (App. A: "a linear warmup
  of the regularizer coefficient"). `top_k` (None = all classes) restricts the regularisers
  to the top-k probabilities, as the paper does on ImageNet (Sec. 4).
  """
  return ml_collections.ConfigDict({
      "baseline": dict(kind="baseline"),
      "entropy": dict(kind="entropy", beta=entropy_beta, top_k=top_k),
      "skl": dict(kind="skl", beta=skl_beta, top_k=top_k),
      "codistill": dict(kind="codistill", num_members=2,
                        beta=rampup(codistill_beta, rampup_fraction)),
      "codistill_entropy": dict(kind="codistill", num_members=2,
                                beta=rampup(codistill_beta, rampup_fraction),
                                entropy_beta=rampup(entropy_beta, rampup_fraction), top_k=top_k),
  })


def all_method_configs(entropy_beta: float, skl_beta: float, codistill_beta: float,
                       rampup_fraction: float = 0.25, burnin_fraction: float = 0.25,
                       stale_refresh_steps: int = 100, anti_beta: float = 0.5,
                       kd_alpha: float = 0.5, kd_temperature: float = 2.0,
                       perturb_step: float = 1.0, noise_std: float = 1.0, top_k=None):
  """The core entries plus every baseline and alternative of the seed papers.

  kd_temperature: the distillation temperature (Bhojanapalli et al., App. A, per dataset),
  also the temperature of the ODS softmax (Nam et al.). perturb_step / noise_std: ODS's eta
  and the Gaussian baseline's sigma in 1/255 pixel levels (methods/perturb.py; 1 is the
  default of Nam et al.'s code). Ensemble members train on their own data order
  (member_data "independent"); the coupled methods share the batch.
  """
  configs = method_configs(entropy_beta, skl_beta, codistill_beta, rampup_fraction, top_k)
  burnin = dict(kind="step_burnin", value=codistill_beta, burnin_fraction=burnin_fraction,
                burnin_steps=None)
  kd = dict(kind="distill", teacher="ensemble2", alpha=kd_alpha, temperature=kd_temperature)
  configs.update({
      # Eq. 19 with the SKL-to-uniform regulariser (both coefficients ramped up).
      "codistill_skl": dict(kind="codistill", num_members=2,
                            beta=rampup(codistill_beta, rampup_fraction),
                            skl_beta=rampup(skl_beta, rampup_fraction), top_k=top_k),
      # Anil et al. 2018: CE to the peers, step burn-in, fresh or stale (refreshed) peers.
      "codistill_ce": dict(kind="codistill_ce", num_members=2, beta=burnin),
      "codistill_ce_stale": dict(kind="codistill_ce", num_members=2, beta=burnin,
                                 stale_refresh_steps=stale_refresh_steps),
      # App. C's ramp-up ablation at one loss each: the SKL/joint loss with Anil et al.'s step
      # burn-in, and Anil et al.'s CE/independent loss with the linear ramp-up.
      "codistill_step": dict(kind="codistill", num_members=2, beta=burnin),
      "codistill_ce_linear": dict(kind="codistill_ce", num_members=2,
                                  beta=rampup(codistill_beta, rampup_fraction)),
      "mutual": dict(kind="mutual", num_members=2, beta=codistill_beta),
      "codistill3": dict(kind="codistill", num_members=3,
                         beta=rampup(codistill_beta, rampup_fraction)),
      "ensemble2": dict(kind="ensemble", num_members=2, member_data="independent"),
      "ensemble4": dict(kind="ensemble", num_members=4, member_data="independent"),
      "ens_distill": kd,
      "self_distill": dict(kind="distill", teacher="baseline", alpha=kd_alpha, temperature=1.0),
      "anti_distill": dict(kind="anti_distill", num_members=2, beta=anti_beta),
      # The penalty on logits instead of probabilities (the abstract names "outputs").
      "anti_distill_logits": dict(kind="anti_distill", num_members=2, beta=anti_beta,
                                  outputs="logits"),
      # Anti-distillation's control: its members share every batch (unlike ensemble2), so
      # the shared-batch 2-ensemble is anti-distillation at lambda = 0 (same loss, same data).
      "ensemble2_shared": dict(kind="ensemble", num_members=2, member_data="shared"),
      "ods_distill": dict(kd, perturbation="ods", step_size=perturb_step),
      "ods_conf_distill": dict(kd, perturbation="ods_confidence", step_size=perturb_step),
      "noise_distill": dict(kd, perturbation="gaussian", noise_std=noise_std),
  })
  # Nam et al. 2021: a BatchEnsemble student, member i distilled from teacher member i.
  configs.be_distill = dict(kd, kind="be_distill", teacher="ensemble4", ensemble_size=4)
  configs.update(nam_method_configs(perturb_step, noise_std))
  return configs


# Nam et al. 2021's setting: a DE-4 teacher distilled into a BatchEnsemble-4 student member by
# member (alpha 0.9, T 1, the authors' code), plain KD, ODS, confidence ODS and Gaussian
# students, and ODS at every eta of NAM_ETAS (separate entries: eta is a Python number of the
# input transform, so it cannot be a stacked sweep).
NAM_ETAS = (0.5, 2.0, 4.0)
NAM_METHODS = ("baseline,ensemble4,nam_kd,nam_ods,nam_cods,nam_gauss,"
               + ",".join(f"nam_ods_eta{str(e).replace('.', 'p')}" for e in NAM_ETAS))


def nam_method_configs(perturb_step: float = 1.0, noise_std: float = 1.0,
                       etas=NAM_ETAS) -> dict:
  """The BE-4 students of Nam et al. 2021 (eta / sigma in 1/255 pixel levels)."""
  be = dict(kind="be_distill", teacher="ensemble4", ensemble_size=4, alpha=0.9,
            temperature=1.0)
  out = {"nam_kd": be,
         "nam_ods": dict(be, perturbation="ods", step_size=perturb_step),
         "nam_cods": dict(be, perturbation="ods_confidence", step_size=perturb_step),
         "nam_gauss": dict(be, perturbation="gaussian", noise_std=noise_std)}
  for eta in etas:
    out[f"nam_ods_eta{str(eta).replace('.', 'p')}"] = dict(be, perturbation="ods", step_size=eta)
  return out


# Anti-distillation against its control (issue 25): the shared-batch ensemble, the reference
# ensemble2, and both output variants; launch/ablations.py sweeps lambda for both.
ANTI_DISTILL_METHODS = "baseline,ensemble2_shared,ensemble2,anti_distill,anti_distill_logits"
ANTI_DISTILL_BETAS = (0.1, 0.3, 1.0, 3.0)


def coefficient_sweep(entropy_betas, skl_betas, codistill_betas, with_baseline=False):
  """Sweep entries (override dicts) over the core methods' coefficients, one method each."""
  sweep = [{"methods": "baseline"}] if with_baseline else []
  sweep += [{"methods": "entropy", "method_configs.entropy.beta": b} for b in entropy_betas]
  sweep += [{"methods": "skl", "method_configs.skl.beta": b} for b in skl_betas]
  sweep += [{"methods": "codistill", "method_configs.codistill.beta.value": b}
            for b in codistill_betas]
  return sweep


def regularized_codistill_sweep(entropy_betas, skl_betas, staged=True):
  """Sweep entries over the regulariser weight of eq. 19.

  App. A: the regularised co-distillation uses the regularisers' range of beta and "only the
  best beta value from the earlier experiments" for co-distillation's own beta. `staged`
  (default) says so: every entry takes `beta.value` from the selected point of the
  `codistill` sweep (a second stage, launch/sweep.py --mode=stacked); False keeps the config's
  beta (one stage).
  """
  fixed = {"from_selected": {"beta.value": "codistill"}} if staged else {}
  sweep = [{"methods": "codistill_entropy",
            "method_configs.codistill_entropy.entropy_beta.value": b, **fixed}
           for b in entropy_betas]
  sweep += [{"methods": "codistill_skl", "method_configs.codistill_skl.skl_beta.value": b,
             **fixed} for b in skl_betas]
  return sweep
