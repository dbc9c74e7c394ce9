"""The worker: one job at a time, a bounded queue, cancellation at every block, nothing left behind."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from tests.helpers.server import our_hooks
from whyllm.server.worker import Busy, Cancelled, Job, Worker

WAIT = 60  # seconds: a bound for waits that should take milliseconds, never a speed assertion


def _forward(model):
    with torch.no_grad():
        model.hf(input_ids=model.encode("When Mary and John"))


def test_jobs_run_one_at_a_time_in_order(model):
    worker = Worker(model, queue_size=8)
    order, running, overlap = [], [], []

    def work(i):
        def fn(job):
            running.append(i)
            overlap.append(len(running))
            _forward(model)
            order.append(i)
            running.remove(i)
            return i

        return fn

    futures = [worker.submit(Job("t", work(i))) for i in range(6)]
    assert [f.result(WAIT) for f in futures] == list(range(6))
    assert order == list(range(6)) and max(overlap) == 1
    assert worker.finished["ok"] == 6
    worker.close()
    assert our_hooks(model.hf) == 0


def test_full_queue_raises_busy(model):
    worker = Worker(model, queue_size=2)
    gate = threading.Event()
    first = worker.submit(Job("block", lambda job: gate.wait(WAIT)))
    while worker.current is None:  # the first job is running, the queue is empty
        gate.wait(0.01)
    waiting = [worker.submit(Job("q", lambda job: "done")) for _ in range(2)]
    with pytest.raises(Busy, match="busy"):
        worker.submit(Job("q", lambda job: "nope"))
    gate.set()
    assert first.result(WAIT) is True and [f.result(WAIT) for f in waiting] == ["done", "done"]
    worker.close()


def test_errors_reach_the_caller_and_the_worker_keeps_serving(model):
    worker = Worker(model)

    def boom(job):
        _forward(model)
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        worker.submit(Job("x", boom)).result(WAIT)
    assert our_hooks(model.hf) == 0
    assert worker.submit(Job("y", lambda job: 42)).result(WAIT) == 42
    assert worker.finished == {"ok": 1, "error": 1, "cancelled": 0}
    worker.close()


def test_a_running_job_stops_at_the_next_block(model):
    worker = Worker(model)
    started, passes = threading.Event(), []

    def forever(job):
        while True:  # only the checkpoint hooks can end this
            started.set()
            _forward(model)
            passes.append(job.passes)

    job = Job("loop", forever)
    future = worker.submit(job)
    started.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while not passes and time.monotonic() < deadline:  # at least one full forward pass done
        started.wait(0.01)
    job.cancel()
    with pytest.raises(Cancelled):
        future.result(WAIT)
    assert worker.recent[-1]["state"] == "cancelled" and worker.recent[-1]["done"] >= 1
    assert our_hooks(model.hf) == 0
    assert worker.submit(Job("next", lambda job: "served")).result(WAIT) == "served"
    worker.close()


def test_a_cancelled_queued_job_never_runs(model):
    worker = Worker(model)
    gate, ran = threading.Event(), []
    worker.submit(Job("block", lambda job: gate.wait(WAIT)))
    queued = Job("queued", lambda job: ran.append(1))
    future = worker.submit(queued)
    queued.cancel()
    gate.set()
    with pytest.raises(Cancelled, match="queued"):
        future.result(WAIT)
    assert not ran
    worker.close()


def test_generation_progress_counts_tokens(model):
    from whyllm.methods.generate import generate

    worker = Worker(model)
    job = Job("generate", lambda job: generate(model, "Hello", max_new_tokens=5, seed=0,
                                               progress=job.progress), total=5, unit="tokens")
    result = worker.submit(job).result(WAIT)
    status = worker.recent[-1]
    assert status["done"] == len(result.steps) and status["total"] == 5 and status["unit"] == "tokens"
    worker.close()


def test_close_cancels_waiting_jobs(model):
    worker = Worker(model)
    gate = threading.Event()
    worker.submit(Job("block", lambda job: gate.wait(WAIT)))
    waiting = worker.submit(Job("w", lambda job: 1))
    threading.Timer(0.05, gate.set).start()
    worker.close()
    with pytest.raises(Cancelled):
        waiting.result(WAIT)
    with pytest.raises(ValueError, match="queue_size"):
        Worker(model, queue_size=0)
