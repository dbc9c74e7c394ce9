import json
from unittest import mock

import pytest
from typer.testing import CliRunner

from whyllm.cli import app

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"


@pytest.fixture
def run(tiny):
    runner = CliRunner()
    model = tiny("llama")

    def invoke(*args):
        with mock.patch("whyllm.model.load.load_model", return_value=model):
            return runner.invoke(app, list(args))

    return invoke


@pytest.mark.parametrize("args, kind, field", [
    (["lens", "The capital of France is", "--target", " Paris", "-p", "-1"], "lens", "layers"),
    (["components", "The capital of France is", "--foil", " Rome"], "components", "parts"),
    (["attention", "The capital of France is", "-l", "1", "--head", "0"], "attention", "heads"),
    (["patch", CLEAN, "--corrupted", CORRUPTED, "--component", "mlp_out"], "patch", "grid"),
    (["patch", CLEAN, "--corrupted", CORRUPTED, "--method", "attribution", "--compare"], "patch", "grid"),
    (["patch", "The capital of France is", "--trace-subject", "France", "--samples", "2"], "patch", "grid"),
    (["circuit", CLEAN, "--corrupted", CORRUPTED, "--steps", "2", "--size", "1", "--size", "5"], "circuit",
     "edges"),
])
def test_json_output(run, args, kind, field):
    res = run(*args, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["kind"] == kind and field in doc and doc["model"] == "tiny-llama"


def test_terminal_view_and_html(run, tmp_path):
    out = tmp_path / "p.html"
    res = run("patch", CLEAN, "--corrupted", CORRUPTED, "--target", " Mary", "--foil", " John",
              "--html", str(out))
    assert res.exit_code == 0 and "activation patching of resid_pre" in res.output
    assert out.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("args, message", [
    (["patch", CLEAN], "either --corrupted"),
    (["patch", CLEAN, "--corrupted", "a b c"], "equal token length"),
    (["patch", CLEAN, "--corrupted", CORRUPTED, "--component", "resid_mid"], "unknown component"),
    (["attention", CLEAN, "-l", "7"], "layer 7 is out of range"),
    (["lens", CLEAN, "--top-k", "0"], "--top-k"),
    (["circuit", CLEAN, "--corrupted", "a b c"], "equal token length"),
    (["circuit", CLEAN, "--corrupted", CORRUPTED, "--edges", "0"], "positive integer"),
    (["circuit", CLEAN, "--corrupted", CORRUPTED, "--graphml", "/nonexistent/dir/x.graphml"], "GraphML"),
])
def test_user_errors_exit_2(run, args, message):
    res = run(*args)
    assert res.exit_code == 2 and message in " ".join(res.output.split())


def test_circuit_writes_graphml_and_html(run, tmp_path):
    graphml, html = tmp_path / "c.graphml", tmp_path / "c.html"
    res = run("circuit", CLEAN, "--corrupted", CORRUPTED, "--steps", "2", "--graphml", str(graphml),
              "--html", str(html))
    assert res.exit_code == 0 and "Keeping the top" in " ".join(res.output.split())
    assert graphml.read_text().count("<edge ") > 10 and "<svg class='graph'" in html.read_text()
