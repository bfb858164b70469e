"""MNIST-1D churn study (offline; the default study of churn_jax).

  python launch/main.py --config=experiments/mnist1d.py --workdir=/tmp/mnist1d
Arguments (after a colon): `quick` (a smoke run), `all` (every method of the seed papers),
`small` (the standard 4,000-sample MNIST-1D, where co-distillation raised churn), `runs=N`.
"""

import ml_collections

from churn_jax.configs import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, small=False, all=False, runs=5)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_runs = arg.runs
  config.vary = "init,data"  # Sources of randomness that differ between runs.

  config.data = ml_collections.ConfigDict(dict(
      name="mnist1d", npz_path="", cache_dir="", seed=42,
      num_samples=5000 if arg.small else 20000, train_split=0.8))
  config.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(256, 256)))
  config.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", momentum=0.9, nesterov=True, weight_decay=0.0))
  config.batch_size = 100
  config.num_train_steps = 6000
  config.lr = ml_collections.ConfigDict(dict(
      base=0.05, warmup_steps=0, decay_steps=(3000, 4500), decay_factor=0.1))

  config.methods = config_lib.ALL_METHODS if arg.all else config_lib.DEFAULT_METHODS
  config.method_configs = config_lib.all_method_configs(
      entropy_beta=0.1, skl_beta=0.005, codistill_beta=1.0, rampup_fraction=0.25)

  config.schurn_alpha = 1.0
  config.eval_batch_size = 4000
  config.strategy = "auto"  # vmap | loop | auto (measured per backend: docs/PERFORMANCE.md)
  config_lib.set_numerics(config, "float32")
  config.cpu_devices = 0  # CPU only; 0 = measured per model (host_devices.py).
  config.compile_cache_dir = "auto"  # Compiled programs reused across runs; "" = off.
  config.plots = True  # False: no WORKDIR/plots (`churn-jax report WORKDIR` draws them later).
  config.log_every_steps = 200
  config.eval_every_steps = 0  # >0: test metrics, churn included, during training (plots).
  config.progress = True
  config.checkpoint_every_steps = 1000  # Also saved at the end; resume: churn_jax/runtime/checkpoint.py.
  config.checkpoints_to_keep = 2

  if arg.quick:
    config.num_runs = min(config.num_runs, 3)
    config.data.num_samples = 2000
    config.num_train_steps = 200
    config.lr.decay_steps = (150,)
    config.model.hidden = (64,)
    config.log_every_steps = 50
    config.checkpoint_every_steps = 50
  return config


def get_sweep():
  """Coefficient ranges of Bhojanapalli et al. 2021, App. A, as config overrides.

  SKL-to-uniform is unbounded below: beta >= 0.05 collapsed the MLP here (README).
  """
  entropy_betas, skl_betas = (0.1, 0.2, 0.3, 0.4, 0.5), (0.001, 0.005, 0.01)
  return (config_lib.coefficient_sweep(entropy_betas=entropy_betas, skl_betas=skl_betas,
                                       codistill_betas=(0.5, 1.0, 2.0, 3.0))
          + config_lib.regularized_codistill_sweep(entropy_betas, skl_betas))
