"""Concurrent requests as one batch on the device: a queue, one worker thread, a short wait.

A request's images (a uint8 tensor [k, 1, 28, 28]) go into a queue with the model they are for;
the worker takes the first waiting request, then gathers more for the same model for at most
``max_wait_s`` or until ``max_batch`` images, runs them as one forward pass (``run(model,
inputs)``: ``ServedModel.probabilities``, under ``torch.inference_mode``) and hands each request
its own rows. The wait is only spent while more requests are on their way (read or decoded now,
see :meth:`Batcher.incoming`): a lone client never waits. A batch that fails is run again one
request at a time, so an exception reaches only the requests it belongs to; a request cancelled
while it waited is skipped. With ``enabled=False`` each request runs alone (the benchmark's
baseline). One worker means one forward pass at a time: the device is never oversubscribed.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

MAX_WAIT_S = 0.003  # default: how long the first request of a batch waits for company (s)
MAX_BATCH = 64  # default: images per forward pass


class Stopped(RuntimeError):
    """The batcher is shutting down: the request was not run."""


@dataclass
class _Job:
    model: Any  # what the inputs run under: one batch never mixes two (a hot swap starts a new one)
    inputs: torch.Tensor
    future: Future = field(default_factory=Future)


class Batcher:
    """``submit(model, inputs) -> Future`` of ``run(model, inputs)``'s rows for these inputs;
    ``stats()`` counts batches."""

    def __init__(self, run: Callable[[Any, torch.Tensor], torch.Tensor], *,
                 max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_S, enabled: bool = True):
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_s
        self.enabled = enabled
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "images": 0, "batches": 0, "largest_batch": 0}
        self._thread: threading.Thread | None = None
        self._closed = False  # set by stop(): submit refuses, queued jobs fail instead of hanging
        self._incoming = 0  # requests being read or decoded: worth waiting for

    @contextmanager
    def incoming(self):
        """Around a request's reading and decoding, up to its :meth:`submit`: while any request
        is inside, a batch waits (up to ``max_wait_s``) for it."""
        with self._lock:
            self._incoming += 1
        try:
            yield
        finally:
            with self._lock:
                self._incoming -= 1

    def start(self) -> "Batcher":
        self._thread = threading.Thread(target=self._work, name="cnn-tracker-batcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        """Run what is queued, stop the worker (waiting at most ``timeout`` s for a forward pass
        in progress) and fail whatever is left with :class:`Stopped`: no caller waits forever."""
        with self._lock:
            self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout)
            self._thread = None
        self._fail_queued()

    def submit(self, model: Any, inputs: torch.Tensor) -> Future:
        job = _Job(model, inputs)
        with self._lock:  # with stop()'s flag: nothing is queued behind the worker's last look
            if self._closed or self._thread is None:
                raise Stopped("the server is shutting down (or its batcher never started)")
            self._queue.put(job)
        return job.future

    def stats(self) -> dict[str, float]:
        with self._lock:
            out = dict(self._stats)
        out["mean_batch"] = round(out["images"] / out["batches"], 2) if out["batches"] else 0.0
        return out

    def _work(self) -> None:
        try:
            carry: _Job | None = None
            while True:
                first = carry or self._queue.get()
                carry = None
                if first is None:
                    return
                jobs, stop = [first], False
                if self.enabled:
                    carry, stop = self._gather(jobs)
                # a request cancelled while it waited is dropped; the others can no longer be
                # cancelled, so set_result below cannot fail (and kill this thread)
                self._run([j for j in jobs if j.future.set_running_or_notify_cancel()])
                if stop:
                    return
        finally:
            with self._lock:
                self._closed = True
            self._fail_queued()

    def _gather(self, jobs: list[_Job]) -> tuple[_Job | None, bool]:
        """More jobs into ``jobs`` until the batch is full or the wait is over: (a job that did
        not fit, to start the next batch; whether a stop arrived)."""
        n = len(jobs[0].inputs)
        deadline = time.monotonic() + self.max_wait_s
        while n < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self._incoming == 0 and self._queue.empty()):
                return None, False  # the wait is over, or nobody else is coming
            try:
                job = self._queue.get(timeout=min(remaining, 0.0005))
            except queue.Empty:
                continue
            if job is None:
                return None, True
            if job.model is not jobs[0].model or n + len(job.inputs) > self.max_batch:
                return job, False
            jobs.append(job)
            n += len(job.inputs)
        return None, False

    def _run(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        sizes = [len(j.inputs) for j in jobs]
        try:
            rows = torch.split(self.run(jobs[0].model, torch.cat([j.inputs for j in jobs])), sizes)
        except Exception as exc:  # noqa: BLE001 - delivered to the request(s) it belongs to
            if len(jobs) > 1:  # which request failed? each alone: only that one learns of it
                for job in jobs:
                    self._run([job])
            else:
                jobs[0].future.set_exception(exc)
            return
        with self._lock:
            s = self._stats
            s["requests"] += len(jobs)
            s["images"] += sum(sizes)
            s["batches"] += 1
            s["largest_batch"] = max(s["largest_batch"], sum(sizes))
        for job, mine in zip(jobs, rows):
            job.future.set_result(mine)

    def _fail_queued(self) -> None:
        """Fail every job still queued (the worker is gone or stuck): Stopped, not a hang."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(Stopped("the server stopped before this request ran"))
