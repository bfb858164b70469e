"""Command line entry point; the logic lives in churn_jax.cli.app (`--help` says what to pass).

  python launch/main.py --config=experiments/mnist1d.py --workdir=/tmp/mnist1d \
      --config.methods=baseline,codistill --config.num_runs=5
"""

from churn_jax.cli import app

if __name__ == "__main__":
  app.run()
