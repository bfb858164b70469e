"""The package layers of churn_jax, lowest first: a package imports only from its own layer
and the layers below it (tests/layering_test.py checks every import, function-local ones too).

  metrics   probabilities in, churn / SChurn / slices / calibration out (pure numpy + jax)
  core      pure per-example losses and step -> value schedules
  models    flax modules and the model registry
  methods   one module per method: members, data, deployed prediction, pure loss
  engine    the (run, member) stack, the device mesh, the jitted train step
  runtime   files (local or gs://), locks, checkpoints, signals, processes, compile cache
  data      sources, per-run order, augmentation
  configs   method entries, sweeps and paper recipes shared by experiments/*.py
  outputs   results files, predictions, tables, plots, TensorBoard, `compare`
  protocol  statistics over runs, the App. A protocol tables
  study     config checks, train a method stack, sweeps, evaluation, results store, regenerate
  cli       the `churn-jax` command and the launch scripts' flag handling
"""

LAYERS = ("metrics", "core", "models", "methods", "engine", "runtime", "data", "configs",
          "outputs", "protocol", "study", "cli")
