"""Config building blocks shared by experiments/*.py: method entries, sweeps, paper recipes."""
