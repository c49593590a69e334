"""Fault drill across machines: 3 "hosts" x 2 agents on one PostgreSQL store; one host is
killed outright and the database server is restarted once.

    python benchmarks/hosts_drill.py --data-dir DIR [--trials 18] [--hosts 3] [--agents 2]
                                     [--work /tmp/cnn-tracker-hosts-drill]

Starts a throwaway PostgreSQL server on loopback (tests/pgserver.py) and, per host, its own
working folder, HOME, data copy and W&B folder (nothing on disk is shared: only the database).
Creates a random sweep (`run_cap` = --trials) of short real `cnn-tracker train` trials and starts
`cnn-tracker agent --agents N` on every host. Once trials are training it SIGKILLs every process
of host 1 (its agents and their trials), later restarts the database server (2 s down), and
waits for the other hosts to finish the sweep. Reports, from the store: trials finished and
crashed, lost (a finished trial without its history, summary or stored best checkpoint),
duplicated (two trials with the same parameters), whether run_cap held, and the seconds taken.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnn_tracker.store.db import Store  # noqa: E402
from tests.pgserver import PgServer  # noqa: E402

CLI = [sys.executable, "-m", "cnn_tracker"]


def host_env(root: Path, url: str, data: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "CNN_TRACKER_"))}
    return {**keep, "HOME": str(root / "home"), "WANDB_DIR": str(root / "work"),
            "WANDB_CONFIG_DIR": str(root / "wandb-config"), "WANDB_SILENT": "true",
            "CNN_TRACKER_DATA_DIR": str(data), "CNN_TRACKER_STORE": url,
            "CNN_TRACKER_HEARTBEAT_SECONDS": "1", "CNN_TRACKER_DOWNLOAD": "0",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def processes_under(folder: Path) -> list[int]:
    """Every process whose working folder is under ``folder`` (a host's agents and trials)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--trials", type=int, default=18)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--work", default="/tmp/cnn-tracker-hosts-drill")
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=False)
    server = PgServer.start(tempfile.mkdtemp(prefix="cnn-tracker-drill-pg-"))
    try:
        print(json.dumps(drill(args, work, server), indent=2))
    finally:
        server.stop("immediate")


def drill(args, work: Path, server: PgServer) -> dict:
    url = server.create_database("drill")
    hosts = []
    for i in range(args.hosts):
        root = work / f"host-{i + 1}"
        (root / "work").mkdir(parents=True)
        shutil.copytree(args.data_dir, root / "data")
        hosts.append((f"host-{i + 1}", root, host_env(root, url, root / "data")))
    sweep = {
        "method": "random", "run_cap": args.trials, "program": "cnn_tracker/__main__.py",
        "metric": {"name": "val/accuracy", "goal": "maximize"},
        "command": ["${env}", "${interpreter}", "-m", "cnn_tracker", "train", "${args}"],
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.05},
            "model": {"value": "lenet"}, "epochs": {"value": 3}, "batch_size": {"value": 8},
            "val_size": {"value": 50}, "log_misclassified": {"value": 4}, "device": {"value": "cpu"},
        },
    }
    name, root, env = hosts[0]
    (root / "work" / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    created = subprocess.run([*CLI, "sweep", "create", "sweep.yaml", "--offline", "--json"],
                             cwd=root / "work", env=env, capture_output=True, text=True, check=True)
    sweep_id = json.loads(created.stdout)["sweep_id"]
    store = Store(url, say=lambda line: None)
    start = time.monotonic()
    agents = {name: subprocess.Popen([*CLI, "agent", sweep_id, "--agents", str(args.agents),
                                      "--name", name, "--quiet-trials", "--stale-after", "8"],
                                     cwd=root / "work", env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
              for name, root, env in hosts}

    def training(host: str) -> list:
        return [r for r in store.runs(sweep_id=sweep_id)
                if r.state == "running" and r.epochs >= 1 and (r.agent or "").startswith(host + "-")]

    events = []
    while not training(hosts[0][0]):
        time.sleep(0.5)
    victims = [r.id for r in training(hosts[0][0])]
    pids = processes_under(hosts[0][1])
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    agents[hosts[0][0]].wait()
    events.append({"fault": f"SIGKILL every process of {hosts[0][0]}", "processes": len(pids),
                   "its training trials": victims, "at_s": round(time.monotonic() - start, 1)})
    done = len([r for r in store.runs(sweep_id=sweep_id) if r.state == "finished"])
    while len([r for r in store.runs(sweep_id=sweep_id) if r.state == "finished"]) < done + 2:
        time.sleep(0.5)
    events.append({"fault": "database server restarted (2 s down)",
                   "at_s": round(time.monotonic() - start, 1)})
    server.restart(down_seconds=2.0)
    codes = {name: p.wait() for name, p in agents.items()}
    return report(store, sweep_id, args, events, codes, time.monotonic() - start)


def report(store: Store, sweep_id: str, args, events, codes, seconds: float) -> dict:
    runs = store.runs(sweep_id=sweep_id)
    states: dict[str, int] = {}
    for r in runs:
        states[r.state] = states.get(r.state, 0) + 1
    stored = store.stored_checkpoints()
    lost = [r.id for r in runs if r.state == "finished" and not (
        r.history and r.summary.get("val/accuracy") is not None and r.id in stored)]
    params = [json.dumps(r.params, sort_keys=True) for r in runs]
    by_host: dict[str, int] = {}
    for r in runs:
        host = (r.agent or "?").rsplit("-", 1)[0]
        by_host[host] = by_host.get(host, 0) + 1
    return {
        "sweep": sweep_id, "hosts": args.hosts, "agents_per_host": args.agents,
        "run_cap": args.trials, "runs": len(runs), "run_cap_held": len(runs) == args.trials,
        "states": states, "trials_by_host": by_host, "faults": events, "agent_exit_codes": codes,
        "crashed": [{"run": r.id, "agent": r.agent, "message": r.message} for r in runs
                    if r.state == "crashed"],
        "lost": lost, "duplicated": len(params) - len(set(params)),
        "sweep_state": store.sweep(sweep_id).state, "seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    main()
