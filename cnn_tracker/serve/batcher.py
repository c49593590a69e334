"""Concurrent requests as one batch on the device: a queue, one worker thread, a short wait.

A request's images (a uint8 tensor [k, 1, 28, 28]) go into a queue; the worker takes the first
waiting request, then gathers more for at most ``max_wait_s`` or until ``max_batch`` images, runs
them as one forward pass (``ServedModel.probabilities``, under ``torch.inference_mode``) and
hands each request its rows. The wait is only spent while more requests are on their way (read or
decoded now, see :meth:`Batcher.incoming`): a lone client never waits. With ``enabled=False`` each request runs alone (the benchmark's
baseline). One worker means one forward pass at a time: the device is never oversubscribed.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

MAX_WAIT_S = 0.003  # default: how long the first request of a batch waits for company (s)
MAX_BATCH = 64  # default: images per forward pass


@dataclass
class _Job:
    inputs: torch.Tensor
    future: Future = field(default_factory=Future)


class Batcher:
    """``submit(inputs) -> Future`` of probabilities [k, classes]; ``stats()`` counts batches."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], *, max_batch: int = MAX_BATCH,
                 max_wait_s: float = MAX_WAIT_S, enabled: bool = True):
        self.run, self.max_batch, self.max_wait_s, self.enabled = run, max_batch, max_wait_s, enabled
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "images": 0, "batches": 0, "largest_batch": 0}
        self._thread: threading.Thread | None = None
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

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def submit(self, inputs: torch.Tensor) -> Future:
        job = _Job(inputs)
        self._queue.put(job)
        return job.future

    def stats(self) -> dict[str, float]:
        with self._lock:
            out = dict(self._stats)
        out["mean_batch"] = round(out["images"] / out["batches"], 2) if out["batches"] else 0.0
        return out

    def _work(self) -> None:
        carry: _Job | None = None
        while True:
            first = carry or self._queue.get()
            carry = None
            if first is None:
                return
            jobs, stop = [first], False
            if self.enabled:
                carry, stop = self._gather(jobs)
            self._run(jobs)
            if stop:
                return

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
            if n + len(job.inputs) > self.max_batch:
                return job, False
            jobs.append(job)
            n += len(job.inputs)
        return None, False

    def _run(self, jobs: list[_Job]) -> None:
        try:
            probs = self.run(torch.cat([j.inputs for j in jobs]))
        except Exception as exc:  # noqa: BLE001 - every waiting request learns of the failure
            for job in jobs:
                job.future.set_exception(exc)
            return
        sizes = [len(j.inputs) for j in jobs]
        with self._lock:
            s = self._stats
            s["requests"] += len(jobs)
            s["images"] += sum(sizes)
            s["batches"] += 1
            s["largest_batch"] = max(s["largest_batch"], sum(sizes))
        for job, rows in zip(jobs, torch.split(probs, sizes)):
            job.future.set_result(rows)
