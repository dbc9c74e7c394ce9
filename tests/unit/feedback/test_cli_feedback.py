import json
from unittest import mock

import pytest
from typer.testing import CliRunner

from whyllm.cli import app
from whyllm.model.tiny import tiny_model


@pytest.fixture
def run():
    runner = CliRunner()
    model = tiny_model("llama")

    def invoke(*args, loaded=None):
        def fake_load(*a, adapter=None, **k):
            if adapter is not None:
                from whyllm.model.adapters import load_adapter

                return load_adapter(tiny_model("llama"), adapter)
            return loaded or model

        with mock.patch("whyllm.model.load.load_model", side_effect=fake_load):
            return runner.invoke(app, [str(a) for a in args])

    return invoke


def test_add_list_show_export_rm(run, db, tmp_path):
    res = run("feedback", "add", "--prompt", "The capital of France is", "--completion", " Rome",
              "--verdict", "bad", "--correction", " Paris", "--reason", "wrong", "--db", db, "--json")
    assert res.exit_code == 0, res.output
    item = json.loads(res.output)["items"][0]
    assert item["source"] == "cli" and item["reason"] == "wrong"
    rows = tmp_path / "rows.jsonl"
    row = {"prompt": "The capital of Italy is", "completion": " Rome", "verdict": "good"}
    rows.write_text(json.dumps(row) + "\n")
    assert run("feedback", "add", "--file", rows, "--db", db).exit_code == 0
    doc = json.loads(run("feedback", "list", "--json", "--db", db).output)
    assert doc["kind"] == "feedback" and [i["id"] for i in doc["items"]] == [1, 2]
    keys = {"id", "prompt", "completion", "verdict", "correction", "model", "created_at"}
    assert set(doc["items"][0]) >= keys
    assert "Paris" in run("feedback", "show", "1", "--db", db).output
    out = run("feedback", "export", "--format", "dpo", "--db", db).output
    assert json.loads(out) == {"prompt": "The capital of France is", "chosen": " Paris",
                               "rejected": " Rome"}
    res = run("feedback", "export", "--format", "kto", "--db", db, "--out", tmp_path / "k.jsonl")
    assert res.exit_code == 0
    assert len((tmp_path / "k.jsonl").read_text().splitlines()) == 3
    assert run("feedback", "rm", "2", "--db", db).exit_code == 0
    assert len(json.loads(run("feedback", "list", "--json", "--db", db).output)["items"]) == 1


@pytest.mark.parametrize("args, match", [
    (["--completion", " Rome", "--correction", ""], "correction is empty"),
    (["--completion", " ", "--correction", " Paris"], "completion is empty"),
    (["--completion", " Rome", "--completion-ids", "[1, 2]"], "decode to"),
    (["--completion", " Rome", "--verdict", "meh"], "verdict"),
])
def test_add_errors_exit_2_and_keep_data(run, db, args, match):
    assert run("feedback", "add", "--prompt", "P", "--completion", " x", "--db", db).exit_code == 0
    res = run("feedback", "add", "--prompt", "The capital of France is", "--db", db, *args)
    assert res.exit_code == 2 and match in " ".join(res.output.split())
    assert len(json.loads(run("feedback", "list", "--json", "--db", db).output)["items"]) == 1


def test_corrupt_database_exit_2(run, tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"garbage" * 200)
    res = run("feedback", "list", "--db", bad)
    assert res.exit_code == 2 and "not a readable feedback database" in res.output
    assert bad.read_bytes() == b"garbage" * 200


def test_import_and_tune_errors(run, db, tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"prompt": "The capital of France is", "completion": " Paris", "label": true}\n')
    assert run("feedback", "import", f, "--model-name", "tiny-llama", "--db", db).exit_code == 0
    res = run("tune", "--db", db, "--method", "kto", "--steps", "1", "--out", tmp_path / "a")
    assert res.exit_code == 2 and "no usable feedback" in res.output  # KTO needs good and bad
    items = json.loads(run("feedback", "list", "--json", "--db", db).output)["items"]
    assert [i["verdict"] for i in items] == ["good"]


def test_tune_then_diff_json(run, db, tmp_path):
    pairs = [("The capital of France is", " Rome", " Paris"), ("The capital of Italy is", " Paris", " Rome")]
    for p, bad, good in pairs:
        run("feedback", "add", "--prompt", p, "--completion", bad, "--correction", good, "--db", db)
    out = tmp_path / "adapter"
    res = run("tune", "--db", db, "--method", "dpo", "--steps", "2", "--checkpoint-every", "1", "--out", out,
              "--lr", "0.01", "--no-progress", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["kind"] == "tune" and doc["steps"] == 2 and doc["feedback_ids"] == [1, 2]
    res = run("diff", "--adapter", out, "The capital of France is", "--max-new-tokens", "3", "--json")
    assert res.exit_code == 0, res.output
    p = json.loads(res.output)["prompts"][0]
    keys = {"prompt", "kl", "gained", "lost", "first_divergence", "layers", "components", "feedback"}
    assert set(p) >= keys
    assert set(p["gained"][0]) >= {"token", "base_prob", "tuned_prob"}
    assert {"id", "score"} <= set(p["feedback"][0])
    assert "KL" in run("diff", "--adapter", out, "The capital of France is", "--max-new-tokens", "2").output
