"""The resume checkpoint format (training.state): round trips, validation, file names."""

from __future__ import annotations

import pytest
import torch

from cnn_tracker.config import TrainConfig
from cnn_tracker.errors import CheckpointError
from cnn_tracker.training.checkpoint import atomic_save, make_checkpoint
from cnn_tracker.training.data import SPECS
from cnn_tracker.training.models import build_model, model_args
from cnn_tracker.training.state import (
    REQUIRED,
    CheckpointFiles,
    TrainState,
    load_resume,
    rng_states,
)


def a_state() -> TrainState:
    return TrainState(
        epoch=2, batch=5, steps_per_epoch=11,
        optimizer={"state": {}, "param_groups": [{"lr": 0.01, "params": [0]}]},
        scheduler=None, scaler={"scale": 1.0}, rng=rng_states(torch.device("cpu")),
        epoch_start=torch.Generator().manual_seed(3).get_state(),
        loss_sum=torch.tensor(12.5), correct=torch.tensor(40), epoch_seconds=1.5,
        history=[{"epoch": 1, "val/accuracy": 0.5}], best={"val/accuracy": 0.5, "val/loss": 1.0},
        best_epoch=1, global_step=16, train_seconds=3.25, run={"run_id": "abc", "wandb_step": 2},
    )


def a_checkpoint(resume: dict) -> dict:
    """A valid checkpoint (an mlp's, as load_checkpoint checks it), with ``resume`` as the
    resume section."""
    model = build_model("mlp", model_args("mlp"))
    ckpt = make_checkpoint(model, "mlp", model_args("mlp"), TrainConfig(model="mlp"),
                           SPECS["mnist"], 1, {})
    return {**ckpt, "resume": resume}


def assert_same(a: TrainState, b: TrainState) -> None:
    for name in ("epoch", "batch", "steps_per_epoch", "optimizer", "scheduler", "scaler",
                 "epoch_seconds", "history", "best", "best_epoch", "global_step", "train_seconds",
                 "run"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("epoch_start", "loss_sum", "correct"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.rng.keys() == b.rng.keys() and all(torch.equal(a.rng[k], b.rng[k]) for k in a.rng)


def test_to_dict_is_the_resume_section_format():
    section = a_state().to_dict()
    assert set(REQUIRED) <= set(section)
    assert set(section["rng"]) == {"torch", "epoch_start"}
    assert set(section["partial"]) == {"loss_sum", "correct", "seconds"}
    assert "weights" not in section and "state_dict" not in section  # weights: the checkpoint's own


def test_round_trip_in_memory():
    state = a_state()
    again = TrainState.from_dict(state.to_dict(), weights={"w": torch.zeros(1)})
    assert_same(state, again)
    assert torch.equal(again.weights["w"], torch.zeros(1))
    assert again.position == (2, 5)


def test_round_trip_through_a_file(tmp_path):
    state = a_state()
    path = atomic_save(a_checkpoint(state.to_dict()), tmp_path / "resume.pt")
    ckpt, loaded = load_resume(path)
    assert_same(state, loaded)
    key = "head.3.weight"
    assert torch.equal(loaded.weights[key], ckpt["state_dict"][key])


def test_optional_keys_may_be_missing(tmp_path):
    section = a_state().to_dict()
    del section["steps_per_epoch"], section["scheduler"]
    _, loaded = load_resume(atomic_save(a_checkpoint(section), tmp_path / "last.pt"))
    assert loaded.steps_per_epoch is None and loaded.scheduler is None


@pytest.mark.parametrize("key", REQUIRED)
def test_a_resume_section_lacking_a_key_is_refused(tmp_path, key):
    section = a_state().to_dict()
    del section[key]
    path = atomic_save(a_checkpoint(section), tmp_path / "last.pt")
    with pytest.raises(CheckpointError) as err:
        load_resume(path)
    assert str(err.value) == (f"the resume state in '{path}' lacks {key}: it is incomplete; "
                              "resume from the run's last.pt instead.")


def test_weights_only_checkpoint_is_refused(tmp_path):
    ckpt = a_checkpoint({})
    del ckpt["resume"]
    path = atomic_save(ckpt, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="holds weights only, no training state to resume"):
        load_resume(path)


def test_checkpoint_file_names(tmp_path):
    files = CheckpointFiles(tmp_path)
    assert (files.best.name, files.last.name, files.resume.name) == ("best.pt", "last.pt", "resume.pt")
    assert files.best.parent == tmp_path
    assert files.resumable() == []
    files.last.write_bytes(b"")
    files.resume.write_bytes(b"")
    assert files.resumable() == [files.resume, files.last]  # resume.pt first: it wins a tie
