"""Seconds per offline-sweep suggestion with N prior runs, on SQLite and PostgreSQL.

    python benchmarks/sweep_suggest.py [--sweep sweeps/fashion_bayes.yaml] [--runs 100 1000]
                                       [--backends sqlite postgresql] [--repeats 5]

For each backend and N: fills a throw-away store with N finished runs (parameters drawn by W&B's
random search over the sweep's space, a synthetic 3-epoch val/accuracy history each), then times
what an agent does to get its next trial: read every run of the sweep, W&B's suggestion (for
bayes: fit its Gaussian process), and the whole claim (read + suggest + commit under the sweep's
row lock). ``postgresql`` runs against a throwaway server on loopback (tests/pgserver.py).
Prints one table of medians (and the spread) of the repeats.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnn_tracker.runs import lifecycle  # noqa: E402
from cnn_tracker.search.engine import import_sweeps, suggest  # noqa: E402
from cnn_tracker.search.scheduler import claim_trial  # noqa: E402
from cnn_tracker.search.spec import load_sweep_file  # noqa: E402
from cnn_tracker.store.db import Store  # noqa: E402


def fill(store: Store, config: dict, n: int) -> str:
    import numpy as np

    sweeps = import_sweeps()
    rng = random.Random(0)
    np.random.seed(0)  # W&B's random search draws from numpy's global generator: same runs each time
    sweep_id = store.create_sweep(config, "bench").id
    random_space = {**config, "method": "random"}
    for i in range(n):
        params = {k: v["value"] for k, v in sweeps.next_run(random_space, []).config.items()}
        run_id = f"r{i:04d}"
        lifecycle.start(store, run_id, sweep_id=sweep_id, project="bench", name=run_id, config=params,
                        output_dir="-", wandb_dir=None, params=params)
        base = 0.85 + 0.05 * math.tanh(math.log10(params.get("lr", 1e-3)) + 2.5) + rng.gauss(0, 0.01)
        for epoch in (1, 2, 3):
            store.record_epoch(run_id, epoch, {"epoch": epoch, "val/accuracy": base - 0.02 * (3 - epoch)})
        lifecycle.finish(store, run_id, "finished", summary={"val/accuracy": base})
    return sweep_id


def measure(store: Store, sweep_id: str, repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"read": [], "suggest": [], "claim": []}
    for _ in range(repeats):
        sweep = store.sweep(sweep_id)
        t0 = time.perf_counter()
        runs = store.runs(sweep_id=sweep_id)
        t1 = time.perf_counter()
        suggest(sweep, runs)
        t2 = time.perf_counter()
        run, _ = claim_trial(store, sweep_id, suggest, agent="bench")  # read + fit + commit
        t3 = time.perf_counter()
        # keep N prior *usable* runs comparable across repeats
        lifecycle.end_by_agent(store, run.id, "killed", exitcode=None)
        out["read"].append(t1 - t0)
        out["suggest"].append(t2 - t1)
        out["claim"].append(t3 - t2)
    return out


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(Path(__file__).parents[1] / "sweeps" / "fashion_bayes.yaml"))
    parser.add_argument("--runs", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = load_sweep_file(args.sweep)
    config.pop("run_cap", None)
    print(f"sweep {Path(args.sweep).name} ({config['method']}, {len(config['parameters'])} "
          f"parameters), median (min-max) of {args.repeats} repeats, seconds")
    print("| backend | prior runs | read all runs | W&B suggestion | claim (read+suggest+commit) |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        try:
            for backend in args.backends:
                for n in args.runs:
                    if backend == "sqlite":
                        store = Store(Path(tmp) / f"s{n}", say=lambda line: None)
                    else:
                        from tests.pgserver import PgServer

                        server = server or PgServer.start(tempfile.mkdtemp(prefix="cnn-tracker-bench-pg-"))
                        store = Store(server.create_database(f"bench{n}"), say=lambda line: None)
                    sweep_id = fill(store.open(), config, n)
                    t = measure(store, sweep_id, args.repeats)
                    print(f"| {backend} | {n} | {_cell(t['read'])} | {_cell(t['suggest'])} | "
                          f"{_cell(t['claim'])} |", flush=True)
                    store.close()
        finally:
            if server is not None:
                server.stop("immediate")


if __name__ == "__main__":
    main()
