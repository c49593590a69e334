"""Run states: the legal moves, the illegal ones, and races between processes (runs.lifecycle)."""

from __future__ import annotations

import time

import pytest

from cnn_tracker.runs import lifecycle
from cnn_tracker.runs.lifecycle import IllegalTransition
from cnn_tracker.search.scheduler import claim_trial
from cnn_tracker.store.db import TERMINAL_STATES, Store

GRID = {"method": "grid", "metric": {"name": "val/accuracy", "goal": "maximize"},
        "parameters": {"lr": {"values": [0.1, 0.2]}}}


def start(store, run_id, **kw):
    lifecycle.start(store, run_id, sweep_id=kw.get("sweep_id"), project="p", name=run_id,
                    config={}, output_dir="o", wandb_dir=None)


def test_a_run_goes_from_running_to_its_end_once(tmp_path):
    store = Store(tmp_path)
    start(store, "r1")
    assert store.run("r1").state == "running"
    assert lifecycle.finish(store, "r1", "finished", summary={"val/accuracy": 0.9}, exitcode=0)
    # the agent's later verdict does not overwrite what the run recorded itself
    assert not lifecycle.end_by_agent(store, "r1", "crashed", exitcode=1)
    run = store.run("r1")
    assert (run.state, run.exitcode, run.summary) == ("finished", 1, {"val/accuracy": 0.9})


@pytest.mark.parametrize("end", TERMINAL_STATES)
def test_every_end_state_can_be_resumed_back_to_running(tmp_path, end):
    store = Store(tmp_path)
    start(store, "r1")
    lifecycle.finish(store, "r1", end)
    start(store, "r1")  # train --resume
    run = store.run("r1")
    assert run.state == "running" and run.ended_at is None


def test_illegal_moves_are_refused(tmp_path):
    with pytest.raises(IllegalTransition):
        lifecycle.check("finished", "pending")
    with pytest.raises(IllegalTransition):
        lifecycle.check("new", "finished")
    store = Store(tmp_path)
    start(store, "r1")
    with pytest.raises(IllegalTransition):
        lifecycle.finish(store, "r1", "pending")  # not an end state
    assert store.run("r1").state == "running"


def test_a_trial_runs_once_its_agent_launched_it(tmp_path):
    store = Store(tmp_path)
    sweep = store.create_sweep(GRID, "p")
    run, why = claim_trial(store, sweep.id, agent="a")
    assert why == "" and run.state == "pending" and run.params in ({"lr": 0.1}, {"lr": 0.2})
    assert lifecycle.launched(store, run.id, 4242, "log.txt")
    assert (store.run(run.id).state, store.run(run.id).pid) == ("running", 4242)
    assert not lifecycle.launched(store, run.id, 4243, "log.txt")  # only from pending
    start(store, run.id, sweep_id=sweep.id)  # the trial fills in its config; state untouched
    assert store.run(run.id).state == "running" and store.run(run.id).output_dir == "o"


def test_a_trial_that_never_started_is_ended_by_its_agent(tmp_path):
    store = Store(tmp_path)
    sweep = store.create_sweep(GRID, "p")
    run, _ = claim_trial(store, sweep.id, agent="a")
    assert lifecycle.end_by_agent(store, run.id, "failed", exitcode=2, message="bad config")
    assert (store.run(run.id).state, store.run(run.id).exitcode) == ("failed", 2)


def test_a_preempted_trial_is_requeued_once(tmp_path):
    store = Store(tmp_path)
    sweep = store.create_sweep(GRID, "p")
    run, _ = claim_trial(store, sweep.id, agent="a")
    start(store, run.id, sweep_id=sweep.id)
    lifecycle.finish(store, run.id, "preempted", exitcode=143)
    first = lifecycle.requeue_preempted(store, sweep.id, "b")
    assert first is not None and first.id == run.id and first.state == "pending"
    assert first.agent == "b"
    assert lifecycle.requeue_preempted(store, sweep.id, "c") is None  # nobody gets it twice


def test_reap_marks_only_silent_active_runs_crashed(tmp_path):
    store = Store(tmp_path)
    start(store, "alive")
    start(store, "done")
    lifecycle.finish(store, "done", "finished")
    time.sleep(0.05)
    store.heartbeat("alive")
    assert lifecycle.reap_stale(store, timeout=0.01) == []  # it just beat
    time.sleep(0.05)
    assert lifecycle.reap_stale(store, timeout=0.01) == ["alive"]
    assert store.run("done").state == "finished"


def test_an_early_terminated_run_records_should_stop(tmp_path):
    store = Store(tmp_path)
    start(store, "r1")
    assert store.run("r1").should_stop is False
    lifecycle.request_stop(store, "r1", "hyperband: below the band")
    lifecycle.finish(store, "r1", "stopped")
    run = store.run("r1")
    assert run.should_stop is True and run.state == "stopped" and "hyperband" in run.message


def test_grid_end_and_run_cap_finish_the_sweep(tmp_path):
    store = Store(tmp_path)
    sweep = store.create_sweep(GRID, "p")
    for _ in range(2):
        run, _ = claim_trial(store, sweep.id, agent="a")
        start(store, run.id, sweep_id=sweep.id)
        lifecycle.finish(store, run.id, "finished")
    run, why = claim_trial(store, sweep.id, agent="a")
    assert run is None and "finished" in why and "grid" in why
    assert store.sweep(sweep.id).state == "finished"
