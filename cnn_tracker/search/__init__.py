"""Sweeps: the spec, the trial command, W&B's `sweeps` engine, the offline agent."""
