"""Regression tests for inputs that once crashed or hung whyllm: each is now one clear refusal."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.helpers.server import BASE, TOKEN
from whyllm.cli import app
from whyllm.errors import InputError, ModelLoadError
from whyllm.files import write_atomic

P = "The capital of France is"


@pytest.fixture
def cli(monkeypatch, tiny):
    monkeypatch.setattr("whyllm.model.load.load_model", lambda *a, **k: tiny("llama"))
    return CliRunner()


CASES = [
    (["predict", "hi \ud800"], "lone surrogate"),
    (["predict", P, "--target", "x\ud800"], "lone surrogate"),
    (["explain", P, "--baseline", "\ud800"], "lone surrogate"),
    (["predict", P, "--top-k", "2147483648"], "top_k must be at most"),  # printed the whole vocabulary
    (["lens", P, "--top-k", "99999999999"], "top_k must be at most"),
    (["generate", P, "--temperature", "nan"], "temperature must be 0 (greedy) or a number from"),
    (["generate", P, "--temperature", "inf"], "temperature must be 0 (greedy) or a number from"),
    (["generate", P, "--top-p", "nan"], "top_p must be in"),
    (["generate", P, "--temperature", "1e-300"], "temperature must be 0 (greedy) or a number from"),  # NaNs
    (["generate", P, "--seed", "99999999999999999999999"], "seed must be an integer from 0"),  # overflow
    (["generate", P, "--seed", "-5"], "seed must be an integer from 0"),
    (["generate", P, "--alternatives", "99999999999"], "alternatives is 99999999999"),
    (["generate", P, "--samples", "99999999"], "samples must be an integer from 1 to"),  # bad_alloc
    (["explain", P, "--steps", "99999999"], "steps must be an integer from 1 to 4096"),
    (["explain", P, "--method", "context_ablation", "--samples", "999999999"], "samples must be an integer"),
    (["patch", P, "--trace-subject", "France", "--samples", "999999999"], "samples must be at most"),
    (["patch", P, "--trace-subject", "France", "--noise", "nan"], "noise must be a finite number"),
    (["trace", P, "--subject", "France", "--noise", "inf"], "noise must be a finite number"),
    (["predict", P, "--html", "/"], "it is a folder"),
    (["predict", P, "--html", "/nonexistent/dir/x.html"], "does not exist"),
    (["predict", P, "--png", "/"], "it is a folder"),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(a)[:50] for a, _ in CASES])
def test_cli_refuses_in_one_line(cli, args, needle):
    r = cli.invoke(app, args)
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    last = [line for line in r.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and needle in " ".join(r.stderr.split()), r.stderr


def test_output_paths_fail_before_the_model_loads(monkeypatch):
    loaded = []
    monkeypatch.setattr("whyllm.model.load.load_model", lambda *a, **k: loaded.append(1))
    r = CliRunner().invoke(app, ["predict", P, "--html", "/nonexistent/x.html"])
    assert r.exit_code == 2 and loaded == []


def test_evaluate_refuses_binary_files_and_empty_method_lists(cli, tmp_path):
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\xff\xfe\x80" * 10)
    r = cli.invoke(app, ["evaluate", str(binary)])
    assert r.exit_code == 2 and "not UTF-8 text" in r.stderr
    prompts = tmp_path / "p.txt"
    prompts.write_text(P + "\n", encoding="utf-8")
    for methods in ("", ","):
        r = cli.invoke(app, ["evaluate", str(prompts), "--methods", methods])
        assert r.exit_code == 2 and "names no method" in r.stderr


@pytest.mark.parametrize("device", ["mps", "cpu:abc", "cuda:x", "tpu", "cpu:0"])
def test_unsupported_devices_are_load_errors(device):
    from whyllm.model.load import _resolve_device

    with pytest.raises((InputError, ModelLoadError), match=repr(device)):
        _resolve_device(device)


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "r.html"
    target.write_text("old", encoding="utf-8")

    def failing(path):
        path.write_text("half", encoding="utf-8")
        raise OSError(28, "No space left on device")

    with pytest.raises(InputError, match="No space left on device"):
        write_atomic(target, failing, "HTML report")
    assert target.read_text(encoding="utf-8") == "old"  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_server_refuses_lone_surrogates_with_4xx(tiny, fmt):
    from whyllm.server import create_app

    with TestClient(create_app(tiny("llama"), token=TOKEN), base_url=BASE) as c:
        for endpoint, body in [("predict", '{"prompt": "hi \\ud800"}'), ("lens", '{"prompt": "\\udfff x"}'),
                               ("explain", '{"prompt": "a b", "target": "\\ud800"}')]:
            r = c.post(f"/api/{endpoint}?format={fmt}", content=body.encode(),
                       headers={"X-Whyllm-Token": TOKEN, "content-type": "application/json"})
            assert r.status_code in (400, 422), (endpoint, r.status_code, r.text)
            assert "unicode" in r.json()["detail"].lower() or "surrogate" in r.json()["detail"]


def test_results_with_non_finite_numbers_serialise(tiny):
    from whyllm import predict

    r = predict(tiny("llama"), P)
    object.__setattr__(r, "entropy", float("nan"))
    assert json.loads(r.to_json())["entropy"] is None


def test_the_server_is_installed_with_whyllm():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    assert any(d.startswith("fastapi") for d in deps) and any(d.startswith("uvicorn") for d in deps)


def test_server_cancels_a_job_past_its_time_limit(tiny):
    from dataclasses import replace

    from whyllm.server import create_app
    from whyllm.server.schemas import LIMITS

    app = create_app(tiny("llama"), token=TOKEN, limits=replace(LIMITS, job_seconds=0.05))
    with TestClient(app, base_url=BASE) as c:
        # 16 samples of 100 tokens: 1,600 forward passes, seconds of work against a 0.05 s limit
        body = {"prompt": P, "max_new_tokens": 100, "samples": 16, "seed": 0}
        r = c.post("/api/generate", json=body, headers={"X-Whyllm-Token": TOKEN})
        assert r.status_code == 504 and "time limit" in r.json()["detail"].replace("limit of", "time limit")
        ok = c.post("/api/predict", json={"prompt": P}, headers={"X-Whyllm-Token": TOKEN})
        assert ok.status_code == 200  # the worker serves the next request


def test_a_tokenizer_larger_than_the_model_is_a_load_error(tiny, tmp_path):
    from transformers import AutoTokenizer

    from whyllm.model.load import load_model
    from whyllm.model.tiny import tiny_model

    small = tiny_model("llama")  # a fresh copy: the cached one stays as it is
    small.hf.resize_token_embeddings(100)  # a model with a smaller vocabulary than this tokenizer's
    small.hf.save_pretrained(tmp_path)
    small.tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).vocab_size > 100
    with pytest.raises(ModelLoadError, match="tokenizer has .* tokens but the model's embedding has only"):
        load_model(str(tmp_path))


def test_runs_that_would_exceed_memory_are_refused_with_the_estimate(tiny, monkeypatch):
    from whyllm import logit_lens, sample
    from whyllm.methods.engine import limits

    monkeypatch.setattr(limits, "available_memory", lambda device=None: 1_000)  # a 1 kB machine
    model = tiny("llama")
    with pytest.raises(InputError, match=r"needs about .* of memory but 1000 bytes is available; pass fewer"):
        logit_lens(model, P)
    with pytest.raises(InputError, match="draw fewer samples or fewer tokens"):
        sample(model, P, n=4)


def test_a_top_p_below_float32_range_keeps_the_likeliest_token(tiny):
    from whyllm import generate

    g = generate(tiny("llama"), P, top_p=1e-300, max_new_tokens=2, seed=0)  # it once kept no token (a 5xx)
    assert all(s.kept == 1 and s.rank == 1 for s in g.steps)
