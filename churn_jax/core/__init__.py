"""Pure math: per-example losses and regularisers, step -> value schedules."""
