"""``/api/feedback``: the app's thumbs and corrections land in the store, bad input is a 4xx."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers.server import BASE, TOKEN
from whyllm.feedback import list_feedback
from whyllm.server import create_app

H = {"X-Whyllm-Token": TOKEN}


def test_feedback_round_trip_and_refusals(tiny, tmp_path):
    db = tmp_path / "f.sqlite"
    model = tiny("llama")
    with TestClient(create_app(model, token=TOKEN, feedback_db=db), base_url=BASE) as c:
        ids = model.tokenizer(" Rome", add_special_tokens=False)["input_ids"]
        body = {"prompt": "The capital of France is", "completion": " Rome", "verdict": "bad",
                "correction": " Paris", "completion_ids": ids, "settings": {"seed": 1}}
        r = c.post("/api/feedback", json=body, headers=H)
        assert r.status_code == 200, r.text
        assert r.json()["source"] == "app" and r.json()["correction"] == " Paris"
        listed = c.get("/api/feedback", headers=H).json()["items"]
        assert [i["id"] for i in listed] == [r.json()["id"]]
        assert list_feedback(db)[0]["completion_ids"] == ids
        for bad in ({**body, "verdict": "meh"}, {**body, "correction": ""}, {**body, "prompt": ""},
                    {**body, "completion_ids": [10**6]}, {**body, "path": "/etc"}):
            r = c.post("/api/feedback", json=bad, headers=H)
            assert 400 <= r.status_code < 500, (bad, r.status_code, r.text)
        assert len(list_feedback(db)) == 1  # nothing stored by the refused requests
        assert c.post("/api/feedback", json=body).status_code == 401  # the token is needed


def test_export_import_and_remove(tiny, tmp_path):
    db = tmp_path / "f.sqlite"
    with TestClient(create_app(tiny("llama"), token=TOKEN, feedback_db=db), base_url=BASE) as c:
        body = {"prompt": "The capital of France is", "completion": " Rome", "verdict": "bad",
                "correction": " Paris"}
        first = c.post("/api/feedback", json=body, headers=H).json()["id"]
        rows = c.get("/api/feedback/export?format=dpo", headers=H).json()["rows"]
        assert rows == [{"prompt": body["prompt"], "chosen": " Paris", "rejected": " Rome"}]
        ids = c.post("/api/feedback/import", json={"rows": rows}, headers=H).json()["ids"]
        assert len(ids) == 1 and len(list_feedback(db)) == 2
        assert c.post("/api/feedback/import", json={"rows": [{"nonsense": 1}]}, headers=H).status_code == 400
        assert len(list_feedback(db)) == 2  # all or none
        assert c.delete(f"/api/feedback/{first}", headers=H).json()["removed"] == [first]
        assert c.delete(f"/api/feedback/{first}", headers=H).status_code == 400
        assert c.delete("/api/feedback/99999999999999999999999", headers=H).status_code == 422
        assert c.get("/api/feedback/export?format=nope", headers=H).status_code == 422
