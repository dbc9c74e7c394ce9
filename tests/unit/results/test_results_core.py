"""PredictResult, GenerationResult, SamplesResult: JSON schema, round trips, DataFrames, validation."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from whyllm.errors import InputError
from whyllm.methods.generate import generate, sample
from whyllm.methods.predict import predict
from whyllm.results.base import SCHEMA_VERSION
from whyllm.results.generate import GenerationResult, SamplesResult, Step
from whyllm.results.predict import Candidate, PredictResult, TargetScore

PROMPT = "The capital of France is"
SCHEMA_DOC = Path(__file__).parents[3] / "docs" / "schema.md"

PREDICT_KEYS = {"schema_version", "kind", "model", "prompt", "input_ids", "input_tokens", "top", "entropy",
                "target", "meta"}
CANDIDATE_KEYS = ["token", "id", "prob", "logprob", "rank"]
TARGET_KEYS = {"text", "ids", "tokens", "logprobs", "ranks", "logprob", "prob", "rank"}
GENERATE_KEYS = {"schema_version", "kind", "model", "prompt", "prompt_ids", "text", "steps", "stop_reason",
                 "settings", "meta"}
STEP_KEYS = {"index", "token", "id", "prob", "logprob", "sample_prob", "rank", "entropy", "kept",
             "alternatives"}
SAMPLES_KEYS = {"schema_version", "kind", "model", "prompt", "samples", "tree", "settings", "meta"}
NODE_KEYS = {"text", "ids", "tokens", "probs", "sample_probs", "samples", "children"}


@pytest.fixture(scope="module")
def results():
    from whyllm.model.tiny import tiny_model

    model = tiny_model("llama")
    return {
        "predict": predict(model, PROMPT, target=" Paris. The dog", top_k=5),
        "generate": generate(model, PROMPT, max_new_tokens=5, seed=0),
        "samples": sample(model, PROMPT, n=3, max_new_tokens=4, seed=0, temperature=1.5),
    }


def _round_trip(result):
    doc = json.loads(json.dumps(result.to_dict()))
    back = type(result).from_dict(doc)
    assert back.to_dict() == result.to_dict()
    assert json.loads(result.to_json()) == doc
    return back


@pytest.mark.parametrize("kind", ["predict", "generate", "samples"])
def test_json_round_trip(results, kind):
    back = _round_trip(results[kind])
    assert type(back) is type(results[kind])
    assert back.to_dict()["kind"] == kind and back.to_dict()["schema_version"] == SCHEMA_VERSION == 1


def test_predict_schema(results):
    doc = results["predict"].to_dict()
    assert set(doc) == PREDICT_KEYS
    assert doc["model"] == "tiny-llama" and doc["prompt"] == PROMPT
    assert all(list(c) == CANDIDATE_KEYS for c in doc["top"])
    assert [c["rank"] for c in doc["top"]] == [1, 2, 3, 4, 5]
    assert set(doc["target"]) == TARGET_KEYS
    assert isinstance(doc["entropy"], float)


def test_predict_without_target_has_null_target(tiny):
    doc = predict(tiny("llama"), PROMPT, top_k=2).to_dict()
    assert doc["target"] is None and set(doc) == PREDICT_KEYS


def test_generate_schema(results):
    doc = results["generate"].to_dict()
    assert set(doc) == GENERATE_KEYS
    assert isinstance(doc["text"], str) and len(doc["steps"]) == 5
    for step in doc["steps"]:
        assert set(step) == STEP_KEYS
        assert all(list(a) == CANDIDATE_KEYS for a in step["alternatives"])
    assert doc["settings"]["seed"] == 0


def test_samples_schema(results):
    doc = results["samples"].to_dict()
    assert set(doc) == SAMPLES_KEYS
    assert all(set(s) == GENERATE_KEYS - {"schema_version", "kind"} for s in doc["samples"])

    def walk(node):
        assert set(node) == NODE_KEYS
        for child in node["children"]:
            walk(child)

    walk(doc["tree"])


def _documented_fields(kind: str) -> set[str]:
    text = SCHEMA_DOC.read_text(encoding="utf-8")
    section = re.search(rf"^## kind: {kind}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, f"docs/schema.md has no '## kind: {kind}' section"
    return set(re.findall(r"^\| `([^`]+)`", section.group(1), re.M))


@pytest.mark.parametrize("kind", ["predict", "generate", "samples"])
def test_schema_doc_lists_every_field(results, kind):
    documented = _documented_fields(kind)
    doc = results[kind].to_dict()
    assert set(doc) <= documented
    nested = {"predict": [("top[]", CANDIDATE_KEYS), ("target", TARGET_KEYS)],
              "generate": [("steps[]", STEP_KEYS), ("steps[].alternatives[]", CANDIDATE_KEYS)],
              "samples": [("tree", NODE_KEYS)]}[kind]
    for prefix, keys in nested:
        assert {f"{prefix}.{k}" for k in keys} <= documented


def test_dataframes(results):
    df = results["predict"].to_dataframe()
    assert list(df.columns) == ["rank", "token", "id", "prob", "logprob"] and len(df) == 5
    df = results["generate"].to_dataframe()
    assert list(df.columns) == ["index", "token", "id", "prob", "logprob", "sample_prob", "rank", "entropy",
                                "kept"]
    assert len(df) == 5
    df = results["samples"].to_dataframe()
    assert "sample" in df.columns and len(df) == sum(len(s.steps) for s in results["samples"].samples)


def test_parquet(results, tmp_path):
    results["generate"].to_parquet(tmp_path / "g.parquet")
    back = pd.read_parquet(tmp_path / "g.parquet")
    pd.testing.assert_frame_equal(back, results["generate"].to_dataframe())


def test_to_json_writes_file(results, tmp_path):
    results["predict"].to_json(tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text()) == results["predict"].to_dict()


@pytest.mark.parametrize("kind", ["predict", "generate", "samples"])
def test_frozen(results, kind):
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[kind].prompt = "changed"


def test_from_dict_checks_kind_and_version(results):
    doc = results["predict"].to_dict()
    with pytest.raises(InputError, match="kind"):
        GenerationResult.from_dict(doc)
    with pytest.raises(InputError, match="schema_version"):
        PredictResult.from_dict({**doc, "schema_version": 99})


def _cand(rank=1, prob=0.5, token="a"):
    return Candidate(token=token, id=rank, prob=prob, logprob=-0.7, rank=rank)


@pytest.mark.parametrize("kw, match", [
    ({"input_tokens": ("a",)}, "differ in length"),
    ({"entropy": -1.0}, "entropy"),
    ({"entropy": float("nan")}, "entropy"),
    ({"top": (_cand(1, 0.2), _cand(2, 0.5))}, "sorted"),
    ({"top": (_cand(2, 0.5), _cand(1, 0.2))}, "sorted"),
    ({"top": (_cand(1, 1.5),)}, "probability"),
    ({"top": (_cand(0, 0.5),)}, "rank"),
    ({"prompt": None}, "prompt"),
])
def test_predict_validation(kw, match):
    base = dict(prompt="p", input_ids=(1, 2), input_tokens=("<bos>", "p"), top=(_cand(),), entropy=1.0)
    PredictResult(**base)
    with pytest.raises(ValueError, match=match):
        PredictResult(**{**base, **kw})


def test_target_validation():
    with pytest.raises(ValueError):
        TargetScore("x", (), (), (), ())
    with pytest.raises(ValueError):
        TargetScore("x", (1, 2), ("a",), (-1.0,), (1,))


def _step(**kw):
    base = dict(index=0, token="a", id=1, prob=0.5, logprob=-0.69, sample_prob=0.5, rank=1, entropy=1.0,
                kept=10, alternatives=(_cand(),))
    return Step(**{**base, **kw})


@pytest.mark.parametrize("kw", [{"prob": 1.5}, {"sample_prob": -0.1}, {"rank": 0}, {"kept": 0}, {"index": -1},
                                {"alternatives": (_cand(1, 0.1), _cand(2, 0.3))}])
def test_step_validation(kw):
    _step()
    with pytest.raises(ValueError):
        _step(**kw)


def test_generation_validation():
    base = dict(prompt="p", prompt_ids=(1,), text="a", steps=(_step(),), stop_reason="length", settings={})
    GenerationResult(**base)
    with pytest.raises(ValueError, match="stop_reason"):
        GenerationResult(**{**base, "stop_reason": "tired"})
    with pytest.raises(ValueError, match="numbered"):
        GenerationResult(**{**base, "steps": (_step(index=1),)})


def test_samples_validation(results):
    g = results["generate"]
    tree = {"text": "", "ids": [], "tokens": [], "probs": [], "sample_probs": [], "samples": [0],
            "children": []}
    SamplesResult(prompt="p", samples=(g,), tree=tree, settings={})
    with pytest.raises(ValueError, match="at least one"):
        SamplesResult(prompt="p", samples=(), tree=tree, settings={})
    with pytest.raises(ValueError, match="lacks"):
        SamplesResult(prompt="p", samples=(g,), tree={"text": ""}, settings={})
    with pytest.raises(ValueError, match="every sample"):
        SamplesResult(prompt="p", samples=(g, g), tree=tree, settings={})


def test_predict_probs_property(results):
    res = results["predict"]
    assert res.probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert PredictResult.from_dict(res.to_dict()).probs is None
