"""A churn study of code that lives outside churn_jax (examples/custom/churn_custom).

  PYTHONPATH=examples/custom churn-jax train --config=examples/custom/config.py \
      --workdir=runs/custom
"""

import ml_collections


def get_config(arg=None):
  del arg
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_runs = 3
  c.vary = "init,data"
  c.data = ml_collections.ConfigDict(dict(
      name="churn_custom.data:load", num_train=600, num_test=300, seed=0))
  c.model = ml_collections.ConfigDict(dict(name="churn_custom.nets:ResidualMLP", width=32,
                                           depth=2))
  c.optimizer = ml_collections.ConfigDict(dict(name="sgd", momentum=0.9, nesterov=True,
                                               weight_decay=0.0))
  c.batch_size = 50
  c.num_train_steps = 150
  c.lr = ml_collections.ConfigDict(dict(base=0.05, warmup_steps=0, decay_steps=(100,),
                                        decay_factor=0.1))
  c.methods = "baseline,prob_match"
  c.method_configs = ml_collections.ConfigDict(dict(
      baseline=dict(kind="baseline"),
      prob_match=dict(kind="churn_custom.losses:build", beta=1.0)))
  c.schurn_alpha = 1.0
  c.eval_batch_size = 300
  c.strategy = "auto"
  c.cpu_devices = 1
  c.compile_cache_dir = ""
  c.log_every_steps = 50
  c.eval_every_steps = 0
  c.progress = False
  c.checkpoint_every_steps = 0
  c.checkpoints_to_keep = 1
  return c
