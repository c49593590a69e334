"""Terminal text of the results commands, from the dicts a :class:`RunSource` returns."""

from __future__ import annotations

from typing import Any

from cnn_tracker.table import cell, metric_cell, percent, render


def state_text(row: dict[str, Any]) -> str:
    """``running``, or ``running (no heartbeat for 130 s)`` for a run that went silent."""
    if row.get("stale"):
        return f"{row['state']} (no heartbeat for {row['no_heartbeat_s']} s)"
    return str(row["state"])


def format_status(status: dict[str, Any]) -> str:
    metric = status["metric"]["name"]
    params = status["parameters"]
    rows = [[r["id"], state_text(r), *[r["params"].get(p) for p in params],
             metric_cell(metric, r["metric"]), r["epochs"], percent(r.get("test/accuracy")),
             r.get("seconds")] for r in status["runs"]]
    head = (f"sweep {status['sweep']} ({status.get('method')}, {status.get('state')}"
            + (f": {status['message']}" if status.get("message") else "") + ")")
    if status.get("counts"):
        head += "  " + ", ".join(f"{n} {s}" for s, n in sorted(status["counts"].items()))
    lines = [head, render(["run", "state", *params, metric, "epochs done", "test/acc", "seconds"],
                          rows)]
    if status.get("best"):
        best = next(r for r in status["runs"] if r["id"] == status["best"])
        lines.append(f"best: {best['id']}  {metric} {metric_cell(metric, best['metric'])}  "
                     + " ".join(f"{k}={cell(v)}" for k, v in best["params"].items()))
    else:
        lines.append("best: none finished yet")
    return "\n".join(lines)


def format_list(items: list[dict[str, Any]]) -> str:
    rows = [[i["sweep"], i["name"], i["method"], i["project"], i["state"], i["runs"],
             i["metric"]["name"], metric_cell(i["metric"]["name"], i["best_value"]), i["best"],
             i["created"]] for i in items]
    return render(["sweep", "name", "method", "project", "state", "runs", "metric", "best",
                   "best run", "created"], rows)


def format_best(target: str, found: dict[str, Any]) -> str:
    """The best run, its config and checkpoint, and the command to evaluate it."""
    m = found["metric"]
    value = metric_cell(m["name"], m["value"]) if isinstance(m["value"], float) else m["value"]
    lines = [f"best run of {target}: {found['run_id']} ({found.get('run_name')}, {found['state']}), "
             f"{m['name']} {value} ({m['goal']})"]
    test = found["metrics"].get("test/accuracy")
    if test is not None:
        lines.append(f"test accuracy {percent(test)}")
    lines.append("config:")
    lines += [f"  {key}: {val}" for key, val in found["config"].items()]
    if "program" in found:  # a trial of another program: what it has is its W&B run
        run = found.get("downloaded") or found.get("wandb_dir")
        lines.append(f"program: {found['program']}; its W&B run: {run}")
        if not found.get("downloaded"):
            lines.append(f"next: cnn-tracker best {target} --download DIR (copies the run folder)")
        return "\n".join(lines)
    ckpt = found.get("downloaded") or found["checkpoint"]
    lines.append(f"checkpoint: {ckpt}")
    if found.get("downloaded") or found["source"] == "local":
        lines.append(f"next: cnn-tracker evaluate {ckpt}")
    return "\n".join(lines)
