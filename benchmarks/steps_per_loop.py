"""config.steps_per_loop: k steps per dispatch against one, through the real trainer.

  python benchmarks/steps_per_loop.py                        # the CPU default study's stack
  python benchmarks/steps_per_loop.py --k=1,16 --steps=1200 --repeats=2 --methods=codistill

Each case trains the default MNIST-1D study's method stack (experiments/mnist1d.py: 5 runs,
MLP 256-256, batch 100) for --steps steps with train.train_method and reports its
train_seconds (compilation included, as a user pays it) and the steady-state step time the
trainer measured (engine/throughput.py). The cases alternate (k=1, k=16, k=1, ...) so load
on a shared machine hits both alike; each line is printed as its case finishes, then the
ratio of the medians. --compute_dtype=bfloat16 times the mixed-precision step the same way.
"""

import statistics

from absl import app, flags

from churn_jax import data as data_lib, methods
from churn_jax.study import train
from experiments import mnist1d

_K = flags.DEFINE_list("k", ["1", "16"], "steps_per_loop values; the first is the reference.")
_STEPS = flags.DEFINE_integer("steps", 1200, "Training steps per case.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Alternating repeats of every case.")
_METHODS = flags.DEFINE_list("methods", ["codistill"], "Methods of experiments/mnist1d.py.")
_DTYPE = flags.DEFINE_string("compute_dtype", "float32", "float32 | bfloat16")
_QUICK = flags.DEFINE_bool("quick", False, "experiments/mnist1d.py:quick data (2,000 samples).")


def main(argv):
  del argv
  config = mnist1d.get_config("quick" if _QUICK.value else None)
  config.num_train_steps = _STEPS.value
  config.lr.decay_steps = ()
  config.progress = False
  config.log_every_steps = 200
  config.compute_dtype = _DTYPE.value
  dataset = data_lib.get_dataset(config.data)
  for name in _METHODS.value:
    method = methods.build(name, config.method_configs[name], _STEPS.value)
    wall, step_s = {}, {}
    for rep in range(_REPEATS.value):
      for k in _K.value:
        config.steps_per_loop = int(k)
        out = train.train_method(config, dataset, method)
        wall.setdefault(k, []).append(out.train_seconds)
        step_s.setdefault(k, []).append(out.throughput.get("step_seconds", float("nan")))
        print(f"{name} k={k} rep={rep}: train {out.train_seconds:.2f} s, steady step "
              f"{1e3 * step_s[k][-1]:.3f} ms, {out.throughput.get('examples_per_second', 0):,.0f}"
              f" examples/s", flush=True)
    ref = _K.value[0]
    for k in _K.value[1:]:
      print(f"{name} k={k} / k={ref}: train_seconds ratio "
            f"{statistics.median(wall[k]) / statistics.median(wall[ref]):.2f}, steady step ratio "
            f"{statistics.median(step_s[k]) / statistics.median(step_s[ref]):.2f}", flush=True)


if __name__ == "__main__":
  app.run(main)
