"""The stacked step: (run, member) stacks, the device mesh, the jitted train step."""
