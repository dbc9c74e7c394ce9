"""A real uvicorn server on 127.0.0.1: concurrent clients, disconnects, the `whyllm serve` command."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from typer.testing import CliRunner

from tests.helpers.server import PROMPT, TOKEN, our_hooks
from whyllm.model.hooks import intervene
from whyllm.model.tiny import tiny_model
from whyllm.server import create_app, running
from whyllm.server.worker import Job

WAIT = 60  # seconds: a bound on waits that take well under one, never a speed assertion
HEADERS = {"x-whyllm-token": TOKEN}


def _base(url: str) -> str:
    return url.split("/?", 1)[0]


def test_32_clients_get_200_or_429_never_5xx(model):
    app = create_app(model, token=TOKEN, queue_size=4)
    with running(app) as url:
        base = _base(url)

        def client(i: int) -> list[int]:
            with httpx.Client(base_url=base, headers=HEADERS, timeout=WAIT) as c:
                return [c.post("/api/predict", json={"prompt": f"{PROMPT} {i} {j}", "top_k": 3}).status_code
                        for j in range(10)]

        with ThreadPoolExecutor(32) as pool:
            codes = [code for codes in pool.map(client, range(32)) for code in codes]
        assert len(codes) == 320
        assert set(codes) <= {200, 429}, sorted(set(codes))
        assert codes.count(200) >= 1
        finished = app.state.worker.finished
        assert finished["ok"] == codes.count(200) and finished["error"] == 0
        with httpx.Client(base_url=base, headers=HEADERS, timeout=WAIT) as c:  # still serving
            assert c.post("/api/predict", json={"prompt": PROMPT}).status_code == 200
    assert our_hooks(model.hf) == 0


def test_full_queue_answers_429_with_retry_after(model):
    app = create_app(model, token=TOKEN, queue_size=2)
    worker, gate = app.state.worker, threading.Event()
    with running(app) as url, httpx.Client(base_url=_base(url), headers=HEADERS, timeout=WAIT) as c:
        worker.submit(Job("block", lambda job: gate.wait(WAIT)))
        while worker.current is None:
            gate.wait(0.01)
        queued = [worker.submit(Job("q", lambda job: None)) for _ in range(2)]
        r = c.post("/api/predict", json={"prompt": PROMPT})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert "busy" in r.json()["detail"]
        gate.set()
        for f in queued:
            f.result(WAIT)
        assert c.post("/api/predict", json={"prompt": PROMPT}).status_code == 200


def test_client_disconnect_cancels_its_job_and_frees_the_worker():
    model = tiny_model("llama", seed=3)  # its own copy: slowed down by a hook below
    app = create_app(model, token=TOKEN)

    def slow(hidden):
        time.sleep(0.02)  # 100 tokens x 2 blocks: at least 4 s of work if nobody cancels
        return hidden

    body = {"prompt": PROMPT, "max_new_tokens": 100, "seed": 1}  # this seed never draws end-of-sequence
    with intervene({b: slow for b in model.adapter.blocks}, inputs=True), running(app) as url:
        base = _base(url)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base}/api/generate", json=body, headers=HEADERS, timeout=0.5)
        worker, deadline = app.state.worker, time.monotonic() + WAIT
        while not worker.recent and time.monotonic() < deadline:
            time.sleep(0.05)
        status = worker.recent[-1]
        assert status["kind"] == "generate" and status["state"] == "cancelled"
        assert status["done"] < 100  # stopped part-way, not run to the end
        r = httpx.post(f"{base}/api/predict", json={"prompt": PROMPT}, headers=HEADERS, timeout=WAIT)
        assert r.status_code == 200
        assert worker.finished == {"ok": 1, "error": 0, "cancelled": 1}
    assert our_hooks(model.hf) == 0


def test_running_serves_the_page_through_the_token_url(model):
    with running(model) as url:
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        with httpx.Client(follow_redirects=True, timeout=WAIT) as c:
            page = c.get(url)
            assert page.status_code == 200 and "whyllm explorer" in page.text
            assert c.get(_base(url) + "/api/info").json()["model"] == model.name  # via the cookie
            assert c.get(_base(url) + "/static/app.js").status_code == 200


def test_serve_command_prints_the_url_with_the_token(model, monkeypatch):
    from whyllm.cli import app as cli

    served = {}
    monkeypatch.setattr("whyllm.model.load.load_model", lambda *a, **k: model)
    monkeypatch.setattr("whyllm.server.run.run_app",
                        lambda app, host, port: served.update(app=app, host=host, port=port))
    out = CliRunner().invoke(cli, ["serve", "--port", "8123", "--queue-size", "3"])
    assert out.exit_code == 0, out.output
    token = served["app"].state.token
    assert f"http://127.0.0.1:8123/?token={token}" in out.stdout and len(token) >= 24
    assert served["host"] == "127.0.0.1" and served["app"].state.worker.queue_size == 3

    out = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--token", "fixed-token-123"])
    assert out.exit_code == 0 and "warning" in out.output
    assert served["app"].state.token == "fixed-token-123"

    out = CliRunner().invoke(cli, ["serve", "--token", "short"])
    assert out.exit_code == 2 and "at least 8 characters" in out.output
