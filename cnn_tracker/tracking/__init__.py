"""The W&B boundary: the only modules that import wandb."""
