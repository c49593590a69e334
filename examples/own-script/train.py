"""A training script of your own: plain wandb.init / wandb.log, nothing from cnn-tracker.

It fits y = 3x - 1 with a tiny numpy "model" so it runs anywhere in a second; swap in your
model. Under `wandb agent` or `cnn-tracker agent` the sweep's values arrive in wandb.config.
"""

import numpy as np
import wandb

DEFAULTS = {"lr": 0.05, "epochs": 8, "batch_size": 16, "noise": 0.1, "optimizer": "sgd"}


def main() -> None:
    run = wandb.init(project="own-script", config=DEFAULTS)
    cfg = run.config
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 512)
    y = 3 * x - 1 + rng.normal(0, cfg.noise, x.size)
    w, b, velocity = 0.0, 0.0, np.zeros(2)
    wandb.define_metric("epoch")
    wandb.define_metric("val_loss", step_metric="epoch", summary="min")
    for epoch in range(1, cfg.epochs + 1):
        for i in range(0, 384, cfg.batch_size):  # the first 384 points train, the rest validate
            xb, yb = x[i:i + cfg.batch_size], y[i:i + cfg.batch_size]
            err = w * xb + b - yb
            grad = np.array([2 * np.mean(err * xb), 2 * np.mean(err)])
            velocity = 0.9 * velocity + grad if cfg.optimizer == "momentum" else grad
            w, b = w - cfg.lr * velocity[0], b - cfg.lr * velocity[1]
        val_loss = float(np.mean((w * x[384:] + b - y[384:]) ** 2))
        wandb.log({"epoch": epoch, "val_loss": val_loss, "train/w": w, "train/b": b})
    run.summary["final_val_loss"] = val_loss
    run.finish()


if __name__ == "__main__":
    main()
