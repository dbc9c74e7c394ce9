"""``POST /api/emerge``: the runs named at launch, by name only; the same document as ``whyllm emerge``."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers.server import BASE, TOKEN
from whyllm.errors import InputError
from whyllm.server import create_app
from whyllm.training.emerge import emerge

H = {"X-Whyllm-Token": TOKEN}


@pytest.fixture
def client(tiny, tiny_run):
    out, _ = tiny_run
    with TestClient(create_app(tiny("llama"), token=TOKEN, runs=[out]), base_url=BASE) as c:
        yield c


def test_emerge_endpoint_answers_the_commands_document(client, tiny_run):
    out, _ = tiny_run
    assert client.get("/api/info", headers=H).json()["runs"] == [out.name]
    r = client.post("/api/emerge", json={"run": out.name, "ablate": False}, headers=H)
    assert r.status_code == 200, r.text
    doc = r.json()
    want = emerge(out, ablate=False).to_dict()
    assert doc["kind"] == "emerge" and [c["step"] for c in doc["checkpoints"]] == [c["step"] for c in
                                                                                    want["checkpoints"]]
    assert client.post("/api/emerge?format=html", json={"run": out.name, "ablate": False},
                       headers=H).text.startswith("<!doctype html>")


def test_requests_name_runs_not_paths(client, tiny_run):
    out, _ = tiny_run
    r = client.post("/api/emerge", json={"run": str(out)}, headers=H)
    assert r.status_code == 422 and "unknown run" in r.json()["detail"]
    r = client.post("/api/emerge", json={"run": out.name, "path": "/etc"}, headers=H)
    assert r.status_code == 422  # unknown fields are refused


def test_a_folder_without_checkpoints_fails_at_launch(tiny, tmp_path):
    with pytest.raises(InputError):
        create_app(tiny("llama"), token=TOKEN, runs=[tmp_path])
