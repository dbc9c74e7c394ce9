"""JSON API: every endpoint answers its command's --json document; bad requests get a clear 4xx."""

from __future__ import annotations

import json
import math

import pytest
from server_common import CORRUPTED, PROMPT, our_hooks
from typer.testing import CliRunner

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
    from whyllm.server.app import _resolve

    renamed = RENAMED_ARGS.get(name, {})
    kwargs = {renamed.get(k, k): v for k, v in body.items()}
    expected = json.loads(json.dumps(_resolve(name)(model, **kwargs).to_dict()))
    close(r.json(), expected)


def test_every_command_has_an_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    for name in ("predict", "generate", "explain", "lens", "components", "attention", "patch"):
        assert "post" in paths[f"/api/{name}"]
        assert paths[f"/api/{name}"]["post"]["requestBody"]["required"]
    assert set(ENDPOINTS) == {"predict", "generate", "explain", "lens", "components", "attention", "patch"}


def test_predict_matches_the_cli_json(client, model, monkeypatch):
    from whyllm.cli import app as cli

    monkeypatch.setattr("whyllm.cli.core.load", lambda *a, **k: model)
    out = CliRunner().invoke(cli, ["predict", PROMPT, "--target", " Mary", "--top-k", "4", "--json"])
    assert out.exit_code == 0, out.output
    r = client.post("/api/predict", json={"prompt": PROMPT, "target": " Mary", "top_k": 4})
    close(r.json(), json.loads(out.stdout))


def test_requests_call_their_functions_with_known_parameters(model):
    import inspect

    from whyllm.server import schemas as sc
    from whyllm.server.app import _resolve

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
        params = inspect.signature(_resolve(name)).parameters
        unknown = set(request.call(model)) - set(params)
        assert not unknown, f"{name} does not take {unknown}"


# CLI option -> request field, where the names differ (repeatable CLI options are singular)
RENAMED = {"layer": "layers", "head": "heads", "position": "positions"}
CLI_ONLY = {"model", "dtype", "device", "trust_remote_code", "allow_pickle", "json", "html", "png"}


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_requests_take_the_commands_parameters(name):
    import importlib
    import inspect

    module = {"predict": "core", "generate": "core", "explain": "explain"}.get(name, "internals")
    command = getattr(importlib.import_module(f"whyllm.cli.{module}"), name)
    options = {RENAMED.get(p, p) for p in inspect.signature(command).parameters} - CLI_ONLY
    missing = options - set(ENDPOINTS[name][0].model_fields)
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


def test_info_and_status(client, model):
    info = client.get("/api/info").json()
    assert info["model"] == model.name and info["n_layers"] == model.adapter.n_layers
    assert all(info["available"].values())
    assert "integrated_gradients" in info["explain_methods"]
    client.post("/api/predict", json={"prompt": PROMPT})
    status = client.get("/api/status").json()
    assert status["running"] is None and status["queued"] == 0 and status["finished"]["ok"] >= 1


def test_no_swagger_ui_from_a_cdn(client):
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404


def test_missing_analysis_is_501(client, monkeypatch):
    import whyllm.server.app as server_app

    def fake(name):
        if name == "lens":
            raise ModuleNotFoundError("No module named 'whyllm.methods.lens'", name="whyllm.methods.lens")
        return get_analysis(name)

    monkeypatch.setattr(server_app, "get_analysis", fake)
    r = client.post("/api/lens", json={"prompt": PROMPT})
    assert r.status_code == 501
    assert "'lens' analysis is not available" in r.json()["detail"]
    assert client.get("/api/info").json()["available"]["lens"] is False
    assert client.post("/api/predict", json={"prompt": PROMPT}).status_code == 200


LONG = "word " * 300  # within the character limit, far over the tiny model's 128-token context
BAD = [
    ("predict", {"prompt": "x" * 4001}, 422, "prompt: String should have at most 4000 characters"),
    ("predict", {"prompt": LONG}, 400, "accepts at most 128"),
    ("predict", {"prompt": ""}, 422, "prompt"),
    ("predict", {"prompt": "   "}, 400, "the prompt is empty"),
    ("predict", {"prompt": 5}, 422, "prompt: Input should be a valid string"),
    ("predict", {}, 422, "prompt: Field required"),
    ("predict", {"prompt": PROMPT, "top_k": 0}, 422, "top_k: Input should be greater than or equal to 1"),
    ("predict", {"prompt": PROMPT, "top_k": 1000}, 422, "top_k: Input should be less than or equal to 100"),
    ("predict", {"prompt": PROMPT, "target": "x" * 201}, 422, "target"),
    ("predict", {"prompt": PROMPT, "model": "/etc/passwd"}, 422, "model: Extra inputs are not permitted"),
    ("predict", {"prompt": PROMPT, "path": "../../secret"}, 422, "path: Extra inputs are not permitted"),
    ("generate", {"prompt": PROMPT, "max_new_tokens": 0}, 422, "max_new_tokens"),
    ("generate", {"prompt": PROMPT, "temperature": -1}, 422, "temperature"),
    ("generate", {"prompt": PROMPT, "top_p": 1.5}, 422, "top_p"),
    ("generate", {"prompt": PROMPT, "samples": 100}, 422, "samples"),
    ("generate", {"prompt": PROMPT, "samples": 3, "greedy": True}, 422, "cannot be combined with greedy"),
    ("generate", {"prompt": PROMPT, "prefix_ids": [999999]}, 422, "token id 999999 is out of range"),
    ("generate", {"prompt": PROMPT, "prefix_ids": [-1]}, 422, "token id -1 is out of range"),
    ("explain", {"prompt": PROMPT, "method": "magic"}, 400, "unknown attribution method 'magic'"),
    ("explain", {"prompt": PROMPT, "steps": 0}, 422, "steps"),
    ("explain", {"prompt": PROMPT, "steps": 100000}, 422, "steps"),
    ("explain", {"prompt": PROMPT, "granularity": "chapter"}, 422, "granularity"),
    ("explain", {"prompt": PROMPT, "target": " Mary", "foil": " Mary"}, 400, "foil"),
    ("lens", {"prompt": PROMPT, "top_k": 50}, 422, "top_k"),
    ("attention", {"prompt": PROMPT, "layers": [2]}, 422, "layer 2 is out of range: this model has 2 layers"),
    ("attention", {"prompt": PROMPT, "heads": [9]}, 422, "head 9 is out of range: this model has 4 heads"),
    ("attention", {"prompt": PROMPT, "max_tokens": 100000}, 422, "max_tokens"),
    ("patch", {"clean": PROMPT, "corrupted": "Hello"}, 400, "length"),
    ("patch", {"clean": PROMPT, "corrupted": CORRUPTED, "component": "brain"}, 400, "brain"),
    ("patch", {"clean": PROMPT, "corrupted": CORRUPTED, "layers": [-3]}, 422, "layer -3 is out of range"),
    ("patch", {"clean": PROMPT}, 422, "give either corrupted (patching) or trace_subject"),
    ("patch", {"clean": PROMPT, "corrupted": CORRUPTED, "trace_subject": "Mary"}, 422, "not both"),
    ("patch", {"clean": PROMPT, "trace_subject": " Mary", "foil": " John"}, 422, "foil apply to patching"),
    ("patch", {"clean": PROMPT, "trace_subject": " Moon"}, 400, "Moon"),
    ("components", {"prompt": PROMPT, "top_neurons": -1}, 422, "top_neurons"),
    ("explain", {"prompt": PROMPT, "method": "context_ablation", "samples": 10**6}, 422, "samples"),
]


@pytest.mark.parametrize(("endpoint", "body", "status", "message"), BAD,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_request_gets_a_clear_4xx(client, model, endpoint, body, status, message):
    """... and the server keeps serving."""
    r = client.post(f"/api/{endpoint}", json=body)
    assert r.status_code == status, r.text
    assert message.lower() in r.json()["detail"].lower()
    assert our_hooks(model.hf) == 0
    assert client.post("/api/predict", json={"prompt": PROMPT, "top_k": 1}).status_code == 200


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
    from whyllm.server.app import encode

    class Fake:
        def to_dict(self):
            return {"a": float("-inf"), "b": [float("nan"), 1.0]}

    assert json.loads(encode(Fake(), "json")) == {"a": None, "b": [None, 1.0]}
