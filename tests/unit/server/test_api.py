"""JSON API: every endpoint answers its command's --json document; bad requests get a clear 4xx."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from tests.helpers.server import CORRUPTED, PROMPT
from whyllm.methods.attribution.registry import METHODS
from whyllm.methods.registry import get_analysis
from whyllm.server.app import ENDPOINTS

IG = {"target": " Mary", "foil": " John", "method": "integrated_gradients", "steps": 8}
CONTRAST = {"target": " Mary", "foil": " John"}
# (endpoint, request body, the analysis it runs); the analysis gets the body as its arguments
CASES = [
    ("predict", {"prompt": PROMPT, "target": " Mary", "top_k": 5}, "predict"),
    ("generate", {"prompt": PROMPT, "max_new_tokens": 6, "seed": 3, "temperature": 0.7, "alternatives": 3},
     "generate"),
    ("generate", {"prompt": PROMPT, "max_new_tokens": 4, "seed": 1, "samples": 3}, "sample"),
    ("explain", {"prompt": PROMPT, **IG}, "explain"),
    ("explain", {"prompt": PROMPT, "method": "occlusion", "granularity": "word", "faithfulness": False},
     "explain"),
    ("lens", {"prompt": PROMPT, "target": " Mary", "top_k": 3}, "lens"),
    ("components", {"prompt": PROMPT, **CONTRAST}, "components"),
    ("attention", {"prompt": PROMPT, "layers": [0], "heads": [1, 2]}, "attention"),
    ("patch", {"clean": PROMPT, "corrupted": CORRUPTED, **CONTRAST}, "patch"),
    ("patch", {"clean": PROMPT, "corrupted": CORRUPTED, "component": "head", "method": "attribution"},
     "patch"),
    ("patch", {"clean": PROMPT, "trace_subject": " Mary", "samples": 3, "target": " John"}, "trace"),
    ("qk", {"prompt": PROMPT, "layer": 1, "head": 0, "query": -1, "key": 2}, "qk"),
    ("circuit", {"prompt": PROMPT, "corrupted": CORRUPTED, **CONTRAST, "steps": 2, "sizes": [1, 5],
                 "random_samples": 1}, "circuit"),
]
# request field -> argument name, where they differ
RENAMED_ARGS = {"sample": {"samples": "n"}, "trace": {"clean": "prompt", "trace_subject": "subject"}}


def close(a, b, path="doc"):
    """Equal documents, floats within 1e-5 (the worker thread may sum in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), path
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys differ"
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize(("endpoint", "body", "name"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_endpoint_answers_the_analysis_document(client, model, endpoint, body, name):
    r = client.post(f"/api/{endpoint}", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    renamed = RENAMED_ARGS.get(name, {})
    kwargs = {renamed.get(k, k): v for k, v in body.items()}
    expected = json.loads(json.dumps(get_analysis(name)(model, **kwargs).to_dict()))
    close(r.json(), expected)


def test_every_command_has_an_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    from whyllm.methods.registry import ANALYSES

    served = {entry.endpoint_name for entry in ANALYSES.values()}
    assert served == set(ENDPOINTS) >= {"predict", "generate", "explain", "evaluate", "lens", "components",
                                        "attention", "patch", "trace"}
    for name in served:
        assert "post" in paths[f"/api/{name}"]
        assert paths[f"/api/{name}"]["post"]["requestBody"]["required"]


def test_predict_matches_the_cli_json(client, model, monkeypatch):
    from whyllm.cli import app as cli

    monkeypatch.setattr("whyllm.model.load.load_model", lambda *a, **k: model)
    out = CliRunner().invoke(cli, ["predict", PROMPT, "--target", " Mary", "--top-k", "4", "--json"])
    assert out.exit_code == 0, out.output
    r = client.post("/api/predict", json={"prompt": PROMPT, "target": " Mary", "top_k": 4})
    close(r.json(), json.loads(out.stdout))


def test_requests_call_their_functions_with_known_parameters(model):
    import inspect

    from whyllm.server import schemas as sc

    variants = [
        (sc.PredictRequest(prompt=PROMPT), "predict"), (sc.GenerateRequest(prompt=PROMPT), "generate"),
        (sc.GenerateRequest(prompt=PROMPT, samples=2), "sample"),
        (sc.ExplainRequest(prompt=PROMPT), "explain"),
        (sc.LensRequest(prompt=PROMPT), "lens"), (sc.ComponentsRequest(prompt=PROMPT), "components"),
        (sc.AttentionRequest(prompt=PROMPT), "attention"),
        (sc.PatchRequest(clean=PROMPT, corrupted=CORRUPTED), "patch"),
        (sc.PatchRequest(clean=PROMPT, trace_subject=" Mary"), "trace"),
    ]
    for request, name in variants:
        assert request.name() == name
        params = inspect.signature(get_analysis(name)).parameters
        unknown = set(request.call(model)) - set(params)
        assert not unknown, f"{name} does not take {unknown}"


# CLI option -> request field, where the names differ (repeatable CLI options are singular)
RENAMED = {"layer": "layers", "head": "heads", "position": "positions", "prompt_file": "prompts",
           "size": "sizes"}
CLI_ONLY = {"model", "adapter", "dtype", "device", "trust_remote_code", "allow_pickle", "json", "html", "png",
            "graphml"}


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_requests_take_the_commands_parameters(name):
    import inspect

    from whyllm.cli import app

    commands = {c.name or c.callback.__name__: c.callback for c in app.registered_commands}
    command = commands[name]
    fields = set(ENDPOINTS[name][0].model_fields)
    cli = inspect.signature(command).parameters
    options = {p if p in fields else RENAMED.get(p, p) for p in cli} - CLI_ONLY
    missing = options - fields
    assert not missing, f"POST /api/{name} lacks the command's {missing}"


def test_generate_rebranches_from_a_prefix(client, model):
    first = client.post("/api/generate", json={"prompt": PROMPT, "max_new_tokens": 5, "seed": 0}).json()
    alt = first["steps"][1]["alternatives"][-1]["id"]
    prefix = [first["steps"][0]["id"], alt]
    body = {"prompt": PROMPT, "max_new_tokens": 3, "seed": 0, "prefix_ids": prefix}
    r = client.post("/api/generate", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["prompt"] == PROMPT + model.tokenizer.decode(prefix)
    assert 1 <= len(doc["steps"]) <= 3


def test_html_format_is_the_report(client):
    r = client.post("/api/predict?format=html", json={"prompt": PROMPT})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.text.startswith("<!doctype html>") and "Next token after" in r.text


def test_a_circuit_result_downloads_as_graphml_and_others_say_why_not(client):
    body = {"prompt": "When Mary and John went out, John gave it to", "steps": 1, "sizes": [1, 4],
            "random_samples": 1}
    r = client.post("/api/circuit", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    graph = client.get(f"/api/report/{r.headers['x-whyllm-result']}?format=graphml")
    assert graph.status_code == 200 and graph.headers["content-type"].startswith("application/graphml+xml")
    assert "attachment" in graph.headers["content-disposition"]
    assert graph.text.count("<node ") == len(doc["nodes"]) and graph.text.count("<edge ") == len(doc["edges"])
    other = client.post("/api/predict", json={"prompt": PROMPT}).headers["x-whyllm-result"]
    refused = client.get(f"/api/report/{other}?format=graphml")
    assert refused.status_code == 400 and "circuits" in refused.json()["detail"]
    assert client.get(f"/api/report/{other}").text.startswith("<!doctype html>")


def test_info_and_status(client, model):
    info = client.get("/api/info").json()
    assert info["model"] == model.name and info["n_layers"] == model.adapter.n_layers
    assert info["endpoints"] == sorted(ENDPOINTS)
    assert info["explain_methods"] == list(METHODS)
    client.post("/api/predict", json={"prompt": PROMPT})
    status = client.get("/api/status").json()
    assert status["running"] is None and status["queued"] == 0 and status["finished"]["ok"] >= 1


def test_no_swagger_ui_from_a_cdn(client):
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404


def test_malformed_json_is_400(client):
    r = client.post("/api/predict", content=b'{"prompt": "x",', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["detail"]
    r = client.post("/api/predict", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_body_over_the_limit_is_413(client):
    big = json.dumps({"prompt": "x" * 100_000}).encode()
    r = client.post("/api/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(100):
            yield b" " * 1024

    r = client.post("/api/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/api/predict", json={"prompt": PROMPT}).status_code == 200


def test_attention_payload_is_capped(client, app):
    long = " ".join(["the store"] * 60)  # about 120 tokens
    r = client.post("/api/attention", json={"prompt": long, "max_tokens": 16})
    assert r.status_code == 200
    doc = r.json()
    assert all(len(h["pattern"]) == 16 for h in doc["heads"]) and doc["offset"] > 0
    from whyllm.server.schemas import LIMITS

    assert LIMITS.attention_tokens <= 256


def test_lens_grid_of_a_long_prompt_is_capped(client):
    long = " ".join(["the store"] * 50)
    doc = client.post("/api/lens", json={"prompt": long}).json()
    assert len(doc["positions"]) == 64 and doc["positions"][-1] == len(doc["input_ids"]) - 1
    doc = client.post("/api/lens", json={"prompt": long, "positions": [-1]}).json()
    assert len(doc["positions"]) == 1


def test_non_finite_numbers_become_null():
    from whyllm.results.base import Result
    from whyllm.server.app import encode

    class Fake(Result):
        kind = "fake"

        def _doc(self):
            return {"a": float("-inf"), "b": [float("nan"), 1.0]}

    doc = json.loads(encode(Fake(), "json"))
    assert doc == {"schema_version": 1, "kind": "fake", "a": None, "b": [None, 1.0]}


@pytest.mark.parametrize("body, message", [
    ({"layer": 0, "head": 0, "query": 2, "key": 3}, "comes after query position"),
    ({"layer": 9, "head": 0}, "layer 9 is out of range"),
    ({"head": 0}, "layer"),
])
def test_qk_bad_input_is_4xx(client, body, message):
    r = client.post("/api/qk", json={"prompt": PROMPT, **body})
    assert 400 <= r.status_code < 500 and message in r.text


@pytest.mark.parametrize("body, message", [
    ({"corrupted": "a b c"}, "equal token length"),
    ({"corrupted": CORRUPTED, "sizes": [0]}, "circuit size must be a positive integer"),
    ({"corrupted": CORRUPTED, "edges": 10**6}, "larger than the graph"),
    ({"corrupted": CORRUPTED, "method": "acdc"}, "eap-ig"),
])
def test_circuit_bad_input_is_4xx(client, body, message):
    r = client.post("/api/circuit", json={"prompt": PROMPT, **body})
    assert 400 <= r.status_code < 500 and message in r.text
