"""The regime search of docs/MULTIVIEW.md: single models on multi-view data, fast.

  python experiments/multiview_search.py --config=experiments/multiview.py \
      --config.data.noise_std=0.25 ...

Trains config.num_runs single PatchNets (baseline: cross-entropy, plain SGD on random
batches) in one jitted lax.scan over all steps, vmapped over runs: no per-step Python, so a
search point costs seconds, not minutes, on a shared CPU. Prints, per run, accuracy on the
single-view / multi-view test slices and the learned view correlations max_r <w_{j,r}, v_{j,l}>
per class (sorted: the weaker view first), and the accuracy of the mean of the runs'
probabilities (an ensemble of the single models). The chosen point is then run through the
real trainer by experiments/multiview_slices.py; this file only explores.
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import optax

from churn_jax import data as data_lib, models

FLAGS = flags.FLAGS


def train_runs(config, dataset):
  """Final filters (R, k, m, d) and test probabilities (R, N, K) of num_runs single models."""
  model_cfg = dict(config.model)
  model = models.get_model(model_cfg.pop("name"), dataset.num_classes, **model_cfg)
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  num_train, batch = len(y), int(config.batch_size)
  tx = optax.sgd(float(config.lr.base))

  def loss_fn(params, xb, yb):
    logits = model.apply({"params": params}, xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  def one_run(key):
    init_key, data_key = jax.random.split(key)
    params = model.init(init_key, x[:1])["params"]

    def step(carry, k):
      params, opt = carry
      idx = jax.random.choice(k, num_train, (batch,), replace=False)
      grads = jax.grad(loss_fn)(params, x[idx], y[idx])
      updates, opt = tx.update(grads, opt, params)
      return (optax.apply_updates(params, updates), opt), None

    keys = jax.random.split(data_key, int(config.num_train_steps))
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), keys)
    return params

  keys = jax.random.split(jax.random.PRNGKey(config.seed), int(config.num_runs))
  params = jax.jit(jax.vmap(one_run))(keys)
  probs = jax.jit(jax.vmap(lambda p: jax.nn.softmax(
      model.apply({"params": p}, jnp.asarray(dataset.x_test)))))(params)
  return np.asarray(params["filters"]), np.asarray(probs)


def summarize(filters, probs, dataset):
  single = dataset.single_view_test
  y = dataset.y_test
  pred = probs.argmax(-1)
  corr = np.einsum("rjfd,jld->rjfl", filters, dataset.views).max(2)  # (R, k, 2)
  corr = np.sort(corr, -1)
  lines = []
  for r in range(len(pred)):
    ok = pred[r] == y
    lines.append(f"run {r}: acc single {100 * ok[single].mean():.1f} multi "
                 f"{100 * ok[~single].mean():.1f} | weak/strong view corr per class "
                 + " ".join(f"{a:.2f}/{b:.2f}" for a, b in corr[r]))
  churn = [(pred[i] != pred[j]) for i in range(len(pred)) for j in range(i + 1, len(pred))]
  churn = np.mean(churn, 0)
  ens = probs.mean(0).argmax(-1) == y
  acc = pred == y
  lines.append(f"mean: acc single {100 * acc[:, single].mean():.1f} multi "
               f"{100 * acc[:, ~single].mean():.1f} | churn single {100 * churn[single].mean():.1f}"
               f" multi {100 * churn[~single].mean():.1f} | ensemble of the {len(pred)} runs: "
               f"single {100 * ens[single].mean():.1f} multi {100 * ens[~single].mean():.1f}"
               f" | weak-view corr / strong {np.mean(corr[..., 0] / corr[..., 1]):.2f}")
  return "\n".join(lines)


def main(argv):
  del argv
  config = FLAGS.config
  start = time.perf_counter()
  dataset = data_lib.get_dataset(config.data)
  filters, probs = train_runs(config, dataset)
  print(summarize(filters, probs, dataset))
  print(f"wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "experiments/multiview.py[:args]",
                                  lock_config=True)
  app.run(main)
