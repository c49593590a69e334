"""Fault drill: four offline agents on one sweep while trials and agents are killed.

    python benchmarks/fault_drill.py --data-dir DIR [--trials 24] [--agents 4] [--work /tmp/drill]

Creates a random sweep (`run_cap` = --trials) of short real `cnn-tracker train` trials (LeNet,
offline W&B runs), starts --agents agents, and once trials are training:

1. SIGKILLs one trial process (the agent should record it crashed and go on),
2. SIGTERMs one agent (its trial should save a resume checkpoint and end preempted),
3. SIGKILLs one agent together with its trial (the run should go stale, then crashed).

Then it restarts agents on the sweep until no trial is left to run, and reports, from the run
store and the run folders: trials finished, crashed, preempted-then-resumed, lost (a run
recorded finished without its summary.json or checkpoint) and duplicated (two runs with the
same parameters), and whether run_cap held. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cnn_tracker.store.db import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--work", default="/tmp/cnn-tracker-drill")
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=False)
    os.chdir(work)
    env = {**os.environ, "CNN_TRACKER_DATA_DIR": args.data_dir, "CNN_TRACKER_HEARTBEAT_SECONDS": "1",
           "WANDB_SILENT": "true"}
    sweep = {
        "method": "random", "run_cap": args.trials,
        "metric": {"name": "val/accuracy", "goal": "maximize"},
        "command": ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}"],
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.05},
            "model": {"value": "lenet"}, "epochs": {"value": 3}, "batch_size": {"value": 8},
            "val_size": {"value": 50}, "log_misclassified": {"value": 4}, "device": {"value": "cpu"},
        },
    }
    Path("sweep.yaml").write_text(yaml.safe_dump(sweep))
    cli = [sys.executable, "-m", "cnn_tracker"]
    created = subprocess.run([*cli, "sweep", "create", "sweep.yaml", "--offline", "--json"],
                             env=env, capture_output=True, text=True, check=True)
    sweep_id = json.loads(created.stdout)["sweep_id"]
    store = Store()
    start = time.monotonic()

    def agent(i: int) -> subprocess.Popen:
        return subprocess.Popen([*cli, "agent", sweep_id, "--name", f"agent-{i}", "--quiet-trials",
                                 "--stale-after", "5"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    agents = {i: agent(i) for i in range(args.agents)}

    def training() -> list:
        return [r for r in store.runs(sweep_id=sweep_id) if r.state == "running" and r.epochs >= 1]

    def wait_training(n: int) -> list:
        while len(found := training()) < n:
            time.sleep(0.3)
        return found

    events = []
    victim = wait_training(1)[0]
    os.kill(victim.pid, signal.SIGKILL)
    events.append({"fault": "SIGKILL trial", "run": victim.id})
    time.sleep(2)
    for name in ("SIGTERM agent", "SIGKILL agent and its trial"):
        run = next(r for r in wait_training(1) if r.id != victim.id)
        i = int(run.agent.split("-")[1])
        if name == "SIGTERM agent":
            agents[i].send_signal(signal.SIGTERM)
        else:
            os.kill(run.pid, signal.SIGKILL)
            agents[i].kill()
        agents[i].wait()
        events.append({"fault": name, "run": run.id, "agent": run.agent})
        victim = run
        time.sleep(2)
    codes = [p.wait() for p in agents.values()]
    rounds = 0
    while any(r.state in ("preempted", "pending", "running") for r in store.runs(sweep_id=sweep_id)) \
            or store.sweep(sweep_id).state == "running":
        rounds += 1
        time.sleep(6)  # past --stale-after: a killed run's heartbeat is stale now
        subprocess.run([*cli, "agent", sweep_id, "--name", f"restart-{rounds}", "--quiet-trials",
                        "--stale-after", "5"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if rounds > 5:
            break
    runs = store.runs(sweep_id=sweep_id)
    states: dict[str, int] = {}
    for r in runs:
        states[r.state] = states.get(r.state, 0) + 1
    lost = [r.id for r in runs if r.state == "finished" and not (
        r.output_dir and (Path(r.output_dir) / "summary.json").is_file() and r.checkpoint
        and Path(r.checkpoint).is_file())]
    params = [json.dumps(r.params, sort_keys=True) for r in runs]
    resumed = [e["run"] for e in events if e["fault"] == "SIGTERM agent"]
    print(json.dumps({
        "sweep": sweep_id, "run_cap": args.trials, "runs": len(runs), "states": states,
        "faults": events, "first_agents_exit_codes": codes, "restart_rounds": rounds,
        "preempted_then_finished": [r for r in resumed if store.run(r).state == "finished"],
        "lost": lost, "duplicated": len(params) - len(set(params)),
        "seconds": round(time.monotonic() - start, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
