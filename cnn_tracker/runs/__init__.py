"""One training run: its plan, its lifecycle (the only writer of run state), signals, the runner."""
