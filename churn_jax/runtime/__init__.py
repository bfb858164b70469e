"""The runtime: files (local or gs://), locks, checkpoints, signals, processes, the compile cache."""
