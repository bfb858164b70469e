"""scikit-learn digits churn study (offline: 1,797 8x8 images shipped with scikit-learn).

  python launch/main.py --config=experiments/digits.py --workdir=/tmp/digits
Arguments: `quick` (a smoke run), `runs=N`, `model=mlp|lenet5`.
"""

import ml_collections

from churn_jax.configs import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, all=False, runs=5, model="mlp")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_runs = arg.runs
  config.vary = "init,data"

  # Stratified 80/20 split: 1,437 train / 360 test.
  config.data = ml_collections.ConfigDict(dict(name="digits", npz_path="", cache_dir="",
                                               seed=0))
  if arg.model == "lenet5":
    config.model = ml_collections.ConfigDict(dict(name="lenet5"))
  else:
    config.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(128, 128)))
  config.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", momentum=0.9, nesterov=True, weight_decay=1e-4))
  config.batch_size = 64
  config.num_train_steps = 1500
  config.lr = ml_collections.ConfigDict(dict(
      base=0.05, warmup_steps=50, decay_steps=(1000, 1300), decay_factor=0.1))

  config.methods = config_lib.ALL_METHODS if arg.all else config_lib.DEFAULT_METHODS
  config.method_configs = config_lib.all_method_configs(
      entropy_beta=0.1, skl_beta=0.005, codistill_beta=1.0, rampup_fraction=0.25)

  config.schurn_alpha = 1.0
  config.eval_batch_size = 360
  config.strategy = "auto"
  config_lib.set_numerics(config, "float32")
  config.cpu_devices = 0  # CPU only; 0 = measured per model (host_devices.py).
  config.compile_cache_dir = "auto"  # Compiled programs reused across runs; "" = off.
  config.plots = True  # False: no WORKDIR/plots (`churn-jax report WORKDIR` draws them later).
  config.log_every_steps = 100
  config.eval_every_steps = 0  # >0: test metrics, churn included, during training (plots).
  config.progress = True
  config.checkpoint_every_steps = 500
  config.checkpoints_to_keep = 2

  if arg.quick:
    config.num_runs = min(config.num_runs, 3)
    config.num_train_steps = 100
    config.lr.warmup_steps = 10
    config.lr.decay_steps = (80,)
    config.log_every_steps = 25
    config.checkpoint_every_steps = 50
  return config


def get_sweep():
  """Coefficient ranges of Bhojanapalli et al. 2021, App. A, as config overrides."""
  entropy_betas, skl_betas = (0.1, 0.2, 0.3, 0.4, 0.5), (0.001, 0.005, 0.01)
  return (config_lib.coefficient_sweep(entropy_betas=entropy_betas, skl_betas=skl_betas,
                                       codistill_betas=(0.5, 1.0, 2.0, 3.0))
          + config_lib.regularized_codistill_sweep(entropy_betas, skl_betas))
