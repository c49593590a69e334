"""cnn-tracker: W&B experiment tracking and sweeps for small CNNs on MNIST and Fashion-MNIST."""

__version__ = "0.1.0"
