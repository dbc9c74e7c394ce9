"""``POST /api/diff``: base vs tuned through the explorer (``whyllm serve --adapter DIR``)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers.server import BASE, TOKEN
from whyllm.server import create_app

H = {"X-Whyllm-Token": TOKEN}
PROMPTS = ["The capital of France is", "Once upon a time"]


def test_diff_endpoint_on_an_adapted_model(adapted):
    with TestClient(create_app(adapted, token=TOKEN), base_url=BASE) as c:
        assert c.get("/api/info", headers=H).json()["adapter"] is True
        r = c.post("/api/diff", json={"prompts": PROMPTS, "feedback": False, "max_new_tokens": 4}, headers=H)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["kind"] == "diff" and [p["prompt"] for p in doc["prompts"]] == PROMPTS
        assert all(p["kl"] >= 0 for p in doc["prompts"])


def test_diff_needs_an_adapter(tiny):
    with TestClient(create_app(tiny("llama"), token=TOKEN), base_url=BASE) as c:
        assert c.get("/api/info", headers=H).json()["adapter"] is False
        r = c.post("/api/diff", json={"prompts": PROMPTS}, headers=H)
        assert r.status_code == 422 and "--adapter" in r.json()["detail"]
