import json

import pytest
from typer.testing import CliRunner

from whyllm.cli import app

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture
def cli(monkeypatch, tiny):
    monkeypatch.setattr("whyllm.model.load.load_model", lambda *a, **k: tiny("llama"))
    return CliRunner()


def test_explain_json(cli):
    r = cli.invoke(app, ["explain", PROMPT, "--target", " Mary", "--foil", " John", "--method", "occlusion",
                         "--granularity", "word", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["kind"] == "attribution" and doc["foil"] == " John" and doc["granularity"] == "word"
    assert doc["faithfulness"]["comprehensiveness"] is not None


def test_explain_terminal_and_html(cli, tmp_path):
    out = tmp_path / "r.html"
    r = cli.invoke(app, ["explain", PROMPT, "--steps", "auto", "--no-faithfulness", "--html", str(out)])
    assert r.exit_code == 0, r.output
    assert "integrated gradients" in r.stdout and "completeness error" in r.stdout
    assert out.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("args", [["--method", "nope"], ["--steps", "0"], ["--steps", "x"],
                                  ["--granularity", "turn"], ["--target", " Mary", "--foil", " Mary"]])
def test_user_errors_exit_2(cli, args):
    r = cli.invoke(app, ["explain", PROMPT, *args])
    assert r.exit_code == 2 and "error:" in r.output


def test_evaluate(cli, tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text(f'# a comment\n{PROMPT}\n{{"prompt": "The capital of France is", "target": " Paris"}}\n')
    r = cli.invoke(app, ["evaluate", str(f), "--methods", "occlusion,attention"])
    assert r.exit_code == 0, r.output
    assert "ranked by faithfulness" in r.stdout and "occlusion" in r.stdout
    bad = tmp_path / "bad.txt"
    bad.write_text("{not json\n")
    assert cli.invoke(app, ["evaluate", str(bad)]).exit_code == 2
    assert cli.invoke(app, ["evaluate", str(tmp_path / "missing.txt")]).exit_code == 2


def test_library_warnings_are_one_line_without_a_file_path(cli):
    r = cli.invoke(app, ["explain", PROMPT, "--target", " Mary", "--steps", "1", "--no-faithfulness"])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stderr.splitlines() if "completeness error" in line]
    assert lines and lines[0].startswith("warning: integrated gradients' completeness error")
    assert ".py" not in r.stderr and "UserWarning" not in r.stderr
