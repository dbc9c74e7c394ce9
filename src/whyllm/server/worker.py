"""One model, one thread: requests run one at a time through a bounded queue, and can be cancelled.

A :class:`Job` wraps one analysis call. :meth:`Worker.submit` queues it or raises :class:`Busy` when
the queue is full (the server answers 429). Cancelling a job sets a flag that the running analysis
checks at every transformer block it enters (:func:`whyllm.model.patches.on_every_block`, for the
duration of the job) and at every progress report, so
even a long integrated-gradients run or patching sweep stops within one block's work.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from whyllm.model.base import Model
from whyllm.model.patches import on_every_block

__all__ = ["Busy", "Cancelled", "Job", "Worker"]

log = logging.getLogger(__name__)


class Busy(Exception):
    """The queue is full: try again later."""


class Cancelled(Exception):
    """The job was cancelled (its client went away, or the server is stopping)."""


class Job:
    """One analysis run: ``fn(job)`` computes the answer; progress and cancellation go through ``job``.

    Attributes:
        kind: name shown in the status (e.g. ``"generate"``).
        total: expected progress units, or ``None`` when unknown. unit: what a unit is.
        done: progress units done so far. passes: transformer forward passes started.

    """

    def __init__(self, kind: str, fn: Callable[[Job], Any], *, total: int | None = None,
                 unit: str = "passes"):
        self.id = secrets.token_hex(6)
        self.kind, self.fn, self.total, self.unit = kind, fn, total, unit
        self.done = 0
        self.passes = 0
        self.state = "queued"
        self.started: float | None = None
        self.future: Future = Future()
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the job to stop at its next check (or never start)."""
        self._cancel.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job was cancelled."""
        if self._cancel.is_set():
            raise Cancelled(f"{self.kind} job {self.id} was cancelled")

    def progress(self, done: int, total: int, _stats: object = None) -> None:
        """The analysis's ``progress(done, total)`` callback: record it, and stop here if cancelled."""
        self.done, self.total = int(done), int(total)
        self.check()

    def status(self) -> dict[str, Any]:
        """Public view of the job: id, kind, state and progress."""
        elapsed = None if self.started is None else round(time.monotonic() - self.started, 2)
        done = self.done if self.unit != "passes" else self.passes
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": done, "total": self.total,
                "unit": self.unit, "elapsed_s": elapsed}


class Worker:
    """Runs jobs on ``model`` one at a time in a background thread; at most ``queue_size`` wait."""

    def __init__(self, model: Model, queue_size: int = 8):
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size!r}")
        self.model = model
        self.queue_size = queue_size
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.current: Job | None = None
        self.finished: dict[str, int] = {"ok": 0, "error": 0, "cancelled": 0}
        self.recent: deque[dict[str, Any]] = deque(maxlen=16)  # statuses of the last finished jobs

    def submit(self, job: Job) -> Future:
        """Queue ``job``; raise :class:`Busy` when ``queue_size`` jobs are already waiting."""
        self._start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Busy(f"the server is busy ({self.queue_size} requests waiting); retry shortly") from None
        return job.future

    def status(self) -> dict[str, Any]:
        """Report the running job, the queue length and counts of finished jobs."""
        job = self.current
        return {"running": job.status() if job else None, "queued": self._queue.qsize(),
                "queue_size": self.queue_size, "finished": dict(self.finished)}

    def close(self, timeout: float = 10.0) -> None:
        """Cancel the running job, drop queued ones and stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        if self.current is not None:
            self.current.cancel()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel()
                job.future.set_exception(Cancelled("the server is stopping"))
        self._queue.put(None)
        thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="whyllm-worker", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            if job.cancelled or not job.future.set_running_or_notify_cancel():  # cancelled while queued
                self._finish(job, "cancelled", Cancelled(f"{job.kind} job {job.id} cancelled while queued"))
                continue
            self.current = job
            job.state, job.started = "running", time.monotonic()
            try:
                with self._checkpoints(job):
                    value = job.fn(job)
            except Cancelled as e:
                self._finish(job, "cancelled", e)
            except Exception as e:  # handed to the request; the thread keeps serving
                self._finish(job, "error", e)
            else:
                self._finish(job, "ok", value=value)

    def _finish(self, job: Job, state: str, error: BaseException | None = None, value: Any = None) -> None:
        """Record how ``job`` ended, then hand its outcome to the waiting request."""
        job.state = {"ok": "done"}.get(state, state)
        self.finished[state] += 1
        self.recent.append(job.status())
        self.current = None
        if job.future.done():  # its waiter cancelled it
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(value)

    def _checkpoints(self, job: Job):
        """Before every block: stop a cancelled job, and count forward passes (block 0)."""

        def check(layer: int) -> None:
            job.check()
            if layer == 0:
                job.passes += 1

        return on_every_block(self.model, check)
