"""Training in pure torch: data, models, the loop, its state and checkpoints, reports."""
