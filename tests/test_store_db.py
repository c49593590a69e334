"""The store's plain reads and writes (store.db): no state logic here, only rows."""

from __future__ import annotations

import pytest

from cnn_tracker.store.db import Store


def test_rows_round_trip_with_json_columns(tmp_path):
    store = Store(tmp_path)
    store.insert_run({"id": "r1", "state": "running", "params": {"lr": 0.1},
                      "config": {"model": "mlp"}, "sweep_id": None, "project": "p"})
    store.record_epoch("r1", 1, {"epoch": 1, "val/accuracy": 0.5})
    store.record_epoch("r1", 2, {"epoch": 2, "val/accuracy": 0.7})
    store.set_checkpoint("r1", "/x/best.pt")
    store.update_run("r1", {"pid": 12, "summary": {"test/accuracy": 0.6}})
    run = store.run("r1")
    assert run.params == {"lr": 0.1} and run.config == {"model": "mlp"}
    assert [h["epoch"] for h in run.history] == [1, 2] and run.epochs == 2
    assert run.checkpoint == "/x/best.pt" and run.pid == 12
    assert run.best_metric("val/accuracy", "maximize") == 0.7
    assert [r.id for r in store.runs(project="p")] == ["r1"] and store.runs(project="q") == []


def test_update_run_refuses_state(tmp_path):
    store = Store(tmp_path)
    store.insert_run({"id": "r1", "state": "running"})
    with pytest.raises(AssertionError):
        store.update_run("r1", {"state": "finished"})


def test_transition_is_conditional(tmp_path):
    store = Store(tmp_path)
    store.insert_run({"id": "r1", "state": "running"})
    assert not store.transition("r1", "pending", ("preempted",))
    assert store.transition("r1", "finished", ("running",), {"exitcode": 0})
    assert (store.run("r1").state, store.run("r1").exitcode) == ("finished", 0)


def test_insert_trial_loses_a_race_cleanly(tmp_path):
    store = Store(tmp_path)
    sweep = store.create_sweep({"method": "random", "parameters": {}, "run_cap": 2}, "p")
    assert store.insert_trial(sweep.id, {"id": "a", "state": "pending"}, expect_seq=0, cap=2)
    # a second agent that read the sweep before "a" was added must look again
    assert not store.insert_trial(sweep.id, {"id": "b", "state": "pending"}, expect_seq=0, cap=2)
    seq = store.runs(sweep_id=sweep.id)[-1].seq
    assert store.insert_trial(sweep.id, {"id": "b", "state": "pending"}, expect_seq=seq, cap=2)
    assert not store.insert_trial(sweep.id, {"id": "c", "state": "pending"},
                                  expect_seq=store.runs(sweep_id=sweep.id)[-1].seq,
                                  cap=2)  # cap reached
    assert [r.id for r in store.runs(sweep_id=sweep.id)] == ["a", "b"]


def test_reads_of_a_missing_store_create_nothing(tmp_path):
    store = Store(tmp_path / "none")
    assert store.runs() == [] and store.sweeps() == [] and store.run("x") is None
    assert store.ids_where(("running",)) == []
    assert not (tmp_path / "none").exists()
