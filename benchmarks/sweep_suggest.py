"""Seconds per offline-sweep suggestion with N prior runs (W&B's `sweeps` engine + our store).

    python benchmarks/sweep_suggest.py [--sweep sweeps/fashion_bayes.yaml] [--runs 100] [--repeats 5]

Fills a throw-away store with N finished runs (parameters drawn by W&B's random search over the
sweep's space, a synthetic 3-epoch val/accuracy history each), then times what an agent does to
get its next trial: read every run from SQLite, fit W&B's Bayesian model, commit the new run.
Prints the median and the spread of the repeats.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

from cnn_tracker.runs import lifecycle
from cnn_tracker.search.engine import import_sweeps, suggest
from cnn_tracker.search.scheduler import claim_trial
from cnn_tracker.search.spec import load_sweep_file
from cnn_tracker.store.db import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(Path(__file__).parents[1] / "sweeps" / "fashion_bayes.yaml"))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = load_sweep_file(args.sweep)
    config.pop("run_cap", None)
    sweeps = import_sweeps()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        sweep_id = store.create_sweep(config, "bench").id
        random_space = {**config, "method": "random"}
        for i in range(args.runs):
            params = {k: v["value"] for k, v in sweeps.next_run(random_space, []).config.items()}
            run_id = f"r{i:04d}"
            lifecycle.start(store, run_id, sweep_id=sweep_id, project="bench", name=run_id, config=params,
                            output_dir="-", wandb_dir=None, params=params)
            base = 0.85 + 0.05 * math.tanh(math.log10(params.get("lr", 1e-3)) + 2.5) + rng.gauss(0, 0.01)
            for epoch in (1, 2, 3):
                store.record_epoch(run_id, epoch, {"epoch": epoch, "val/accuracy": base - 0.02 * (3 - epoch)})
            lifecycle.finish(store, run_id, "finished", summary={"val/accuracy": base})

        suggest_s, claim_s = [], []
        for _ in range(args.repeats):
            sweep = store.sweep(sweep_id)
            t0 = time.perf_counter()
            runs = store.runs(sweep_id=sweep_id)
            t1 = time.perf_counter()
            suggest(sweep, runs)
            t2 = time.perf_counter()
            run, _ = claim_trial(store, sweep_id, suggest, agent="bench")  # read + fit + commit
            t3 = time.perf_counter()
            lifecycle.end_by_agent(store, run.id, "killed", exitcode=None)  # keep N prior *usable* runs comparable across repeats
            suggest_s.append(t2 - t1)
            claim_s.append(t3 - t2)
            read_s = t1 - t0
        n = len(store.runs(sweep_id=sweep_id))
    print(f"sweep {Path(args.sweep).name} ({config['method']}, {len(config['parameters'])} parameters), "
          f"{args.runs} prior runs, {args.repeats} repeats")
    print(f"  W&B bayes next_run alone:       median {statistics.median(suggest_s):.2f} s "
          f"(min {min(suggest_s):.2f}, max {max(suggest_s):.2f})")
    print(f"  agent claim (read+fit+commit):  median {statistics.median(claim_s):.2f} s "
          f"(min {min(claim_s):.2f}, max {max(claim_s):.2f}); reading {n} runs from SQLite {read_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
