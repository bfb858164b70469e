"""The study: config checks, training a method stack, sweeps, evaluation, the results store."""
