"""The regime search of docs/MULTIVIEW.md: single models on multi-view data, fast.

  python experiments/multiview_search.py --config=experiments/multiview.py \
      --config.data.noise_std=0.25 ... [--trace_every=50]

Trains config.num_runs single models (cross-entropy, plain SGD on random batches) in one jitted
lax.scan over all steps, vmapped over runs: no per-step Python or input thread. Prints, per
run, accuracy on the single-view / multi-view test slices and, for the patch-wise net, the
learned view correlations max_r <w_{j,r}, v_{j,l}> per class (sorted: the weaker view first);
then the training accuracy per slice and the accuracy of the mean of the runs' probabilities
(an ensemble of the single models). The chosen point then runs through the real trainer in
experiments/multiview_slices.py; this file only explores.
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


def _trainer(config, dataset):
  """The model, init(key) -> (params, opt_state, data_key) and train(params, opt, keys)."""
  model_cfg = dict(config.model)
  model = models.get_model(model_cfg.pop("name"), dataset.num_classes, **model_cfg)
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  num_train, batch = len(y), int(config.batch_size)
  tx = optax.sgd(float(config.lr.base))

  def loss_fn(params, xb, yb):
    logits = model.apply({"params": params}, xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  def init(key):
    init_key, data_key = jax.random.split(key)
    params = model.init(init_key, x[:1])["params"]
    return params, tx.init(params), data_key

  def train(params, opt, keys):
    """One SGD step per key (each key draws the batch)."""
    def step(carry, k):
      params, opt = carry
      idx = jax.random.choice(k, num_train, (batch,), replace=False)
      grads = jax.grad(loss_fn)(params, x[idx], y[idx])
      updates, opt = tx.update(grads, opt, params)
      return (optax.apply_updates(params, updates), opt), None
    return jax.lax.scan(step, (params, opt), keys)[0]

  return model, init, train


def train_runs(config, dataset):
  """Final filters (R, k, m, d), test probabilities (R, N, K) and train predictions (R, N)."""
  model, init, train = _trainer(config, dataset)

  def one_run(key):
    params, opt, data_key = init(key)
    return train(params, opt, jax.random.split(data_key, int(config.num_train_steps)))[0]

  keys = jax.random.split(jax.random.PRNGKey(config.seed), int(config.num_runs))
  params = jax.jit(jax.vmap(one_run))(keys)
  predict = jax.jit(jax.vmap(lambda p, x: jax.nn.softmax(model.apply({"params": p}, x)),
                             in_axes=(0, None)))
  probs = predict(params, jnp.asarray(dataset.x_test))
  train_pred = np.asarray(predict(params, jnp.asarray(dataset.x_train))).argmax(-1)
  filters = np.asarray(params["filters"]) if "filters" in params else None
  return filters, np.asarray(probs), train_pred


def trace(config, dataset, every):
  """Run 0's class-0 filters <w_r, v_{0,l}> (m, 2) every `every` steps: which filter learns
  which view, and when (docs/MULTIVIEW.md, step 3 of the search)."""
  _, init, train = _trainer(config, dataset)
  key = jax.random.split(jax.random.PRNGKey(config.seed), int(config.num_runs))[0]
  params, opt, data_key = init(key)
  keys = jax.random.split(data_key, int(config.num_train_steps))
  train = jax.jit(train)
  for start in range(0, len(keys) - every + 1, every):
    params, opt = train(params, opt, keys[start:start + every])
    corr = np.asarray(params["filters"])[0] @ dataset.views[0].T  # (m, 2)
    print(f"step {start + every}: class 0 filters <w_r, v_1>, <w_r, v_2>: "
          + " ".join(f"{a:.3f},{b:.3f}" for a, b in corr))


def summarize(filters, probs, train_pred, dataset):
  single = dataset.single_view_test
  y = dataset.y_test
  pred = probs.argmax(-1)
  if filters is None:  # Not a patch net: no per-view filters to read.
    corr = np.full((len(pred), dataset.num_classes, 2), np.nan)
  else:
    corr = np.sort(np.einsum("rjfd,jld->rjfl", filters, dataset.views).max(2), -1)  # (R, k, 2)
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
  train_ok = train_pred == dataset.y_train
  sv = dataset.single_view_train
  lines.append(f"train accuracy: single-view {100 * train_ok[:, sv].mean():.1f} "
               f"({int(sv.sum())} examples) multi-view {100 * train_ok[:, ~sv].mean():.1f}")
  return "\n".join(lines)


def main(argv):
  del argv
  config = FLAGS.config
  start = time.perf_counter()
  dataset = data_lib.get_dataset(config.data)
  if FLAGS.trace_every:
    trace(config, dataset, FLAGS.trace_every)
    return
  print(summarize(*train_runs(config, dataset), dataset))
  print(f"wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "experiments/multiview.py[:args]",
                                  lock_config=True)
  flags.DEFINE_integer("trace_every", 0, "If > 0: print run 0's class-0 filter-view "
                       "correlations every this many steps instead of the summary.")
  app.run(main)
