"""The stop-or-preemption rule of runs.signals.StopSignals (README, "Stop or preemption")."""

from __future__ import annotations

import signal

import pytest

from cnn_tracker.runs.signals import STOP_VERDICT_SECONDS, StopSignals


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make(**kw):
    clock = Clock()
    return StopSignals(lambda line: None, clock=clock, **kw), clock


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_outside_wandbs_agent_every_signal_is_a_preemption(signum):
    stop, _ = make()
    stop._handle(signum, None)
    assert stop() == signum and stop.stop_reason() == ""


def test_offline_under_wandbs_agent_sigterm_is_a_stop():
    stop, _ = make(under_wandb_agent=True, online=False)
    stop._handle(signal.SIGTERM, None)
    assert stop() == 0 and "W&B's agent" in stop.stop_reason()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR1])
def test_under_wandbs_agent_ctrl_c_and_usr1_stay_preemptions(signum):
    stop, _ = make(under_wandb_agent=True, online=True)
    stop._handle(signum, None)
    assert stop() == signum and stop.stop_reason() == ""


def test_online_sigterm_confirmed_by_wandb_is_a_stop():
    stop, clock = make(under_wandb_agent=True, online=True)
    stop._handle(signal.SIGTERM, None)
    assert stop() == 0 and stop.stop_reason() == ""  # waiting for W&B's verdict, still training
    clock.now += STOP_VERDICT_SECONDS / 2
    stop.request_stop()  # the SDK's stop_fn: the server marked the run stopped
    assert stop() == 0 and stop.stop_reason()


def test_online_sigterm_without_wandbs_verdict_becomes_a_preemption():
    stop, clock = make(under_wandb_agent=True, online=True)
    stop._handle(signal.SIGTERM, None)
    clock.now += STOP_VERDICT_SECONDS + 1
    assert stop() == signal.SIGTERM and stop.stop_reason() == ""


def test_a_stop_from_the_server_alone_is_a_stop_and_a_second_signal_aborts():
    stop, _ = make()
    stop.request_stop()
    assert stop() == 0 and stop.stop_reason()
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGTERM, None)


def test_a_closed_pipe_of_a_vanished_agent_preempts_instead_of_crashing(monkeypatch):
    from cnn_tracker.runs import signals as signals_mod
    from cnn_tracker.runs.runner import Recorder

    class Closed:
        def __call__(self, line):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(signals_mod.env, "is_local_trial", lambda: True)
    stop, _ = make()
    monkeypatch.setattr(signals_mod.os, "getppid", lambda: -1)  # the agent is gone
    monkeypatch.setattr(signals_mod.os, "dup2", lambda *a: None)
    recorder = Recorder.__new__(Recorder)
    recorder._stop, recorder._echo = stop, Closed()
    recorder.log("epoch 1/3 ...")  # swallowed: the run is preempted instead
    assert stop() == signal.SIGHUP
    monkeypatch.setattr(signals_mod.env, "is_local_trial", lambda: False)
    outside = Recorder.__new__(Recorder)
    outside._stop, outside._echo = make()[0], Closed()  # a plain run piped into `head`
    with pytest.raises(BrokenPipeError):
        outside.log("epoch 1/3 ...")
