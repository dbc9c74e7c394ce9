import functools
import json
import math
import re
from pathlib import Path
from unittest import mock

import pytest
import torch
from typer.testing import CliRunner

from whyllm.cli import app
from whyllm.errors import InputError, UnsupportedModelError
from whyllm.methods.attention import attention
from whyllm.methods.qk import qk
from whyllm.model.tiny import tiny_model
from whyllm.results.qk import QKResult

PROMPT = "When Mary and John went to the store, John gave a drink to"
ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gpt2", "phi3")
TOL = 1e-4  # float32: the pairs sum to the score within 1e-4 relative


@functools.cache
def _sharp(arch: str):
    """A tiny model with query/key weights scaled up: attention far from uniform (cached, do not mutate)."""
    model = tiny_model(arch, seed=1)
    with torch.no_grad():
        for name, p in model.hf.named_parameters():
            if any(k in name for k in ("q_proj", "k_proj", "qkv_proj", "c_attn")):
                p.mul_(6.0)
    return model


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layer", [0, -1])
def test_parts_sum_to_the_real_score(arch, layer):
    model = _sharp(arch)
    r = qk(model, PROMPT, layer=layer, head=1, query=-1, key=2)
    assert abs(r.parts.sum().item() - r.score) <= TOL * max(abs(r.score), 1.0)
    assert r.error == pytest.approx(abs(r.parts.sum().item() - r.score))
    assert r.weights_check < 1e-5
    assert r.parts.shape == (len(r.sources), len(r.sources))
    ad = model.adapter
    assert r.kv_head == 1 // (ad.n_heads // ad.n_kv_heads)
    want = {"embed", "bias"} | ({"pos_embed"} if ad.pos_embed is not None else set())
    if r.layer > 0:
        want |= {"L0.H0", f"L{r.layer - 1}.mlp"}
    assert want <= set(r.sources)
    assert not any(s.startswith(f"L{r.layer}.") for s in r.sources)  # only earlier layers


@pytest.mark.parametrize("arch", ARCHS)
def test_scores_agree_with_the_models_attention_weights(arch):
    """Independent check: the difference of two keys' scores is the log ratio of their eager weights."""
    model = _sharp(arch)
    weights = attention(model, PROMPT, layers=[1], heads=[3]).patterns[0, 0, -1]  # (key,)
    a = qk(model, PROMPT, layer=1, head=3, key=2)
    b = qk(model, PROMPT, layer=1, head=3, key=5)
    assert a.probability == pytest.approx(float(weights[2]), abs=1e-6)
    assert b.probability == pytest.approx(float(weights[5]), abs=1e-6)
    log_ratio = math.log(weights[2]) - math.log(weights[5])
    assert abs(log_ratio) > 0.05  # the sharpened model's attention is not uniform
    assert a.parts.sum().item() - b.parts.sum().item() == pytest.approx(log_ratio, abs=1e-3)


def test_gemma_has_per_head_norms_and_grouped_query_attention():
    model = _sharp("gemma3_text")
    attn = model.adapter.part(0, "attn")
    assert attn.q_norm is not None and model.adapter.n_kv_heads < model.adapter.n_heads
    r = qk(model, PROMPT, layer=1, head=3, key=0)
    assert r.kv_head == 1 and "q_norm and k_norm" in r.linearisation and "RoPE" in r.linearisation


def test_default_key_is_the_most_attended():
    model = _sharp("llama")
    weights = attention(model, PROMPT, layers=[1], heads=[0]).patterns[0, 0, 4]
    r = qk(model, PROMPT, layer=1, head=0, query=4)
    assert r.query == 4 and r.key == int(weights[:5].argmax())


def test_marginals_sum_each_side():
    r = qk(_sharp("qwen2"), PROMPT, layer=1, head=0, query=6, key=3)
    assert torch.allclose(r.query_marginals.sum(), r.parts.sum()) and len(r.key_marginals) == len(r.sources)
    assert r.query_marginals[r.sources.index("bias")] != 0  # qwen2's q/k projection biases


@pytest.mark.parametrize("kwargs, message", [
    ({"layer": 2, "head": 0}, "layer 2 is out of range"),
    ({"layer": 0, "head": 4}, "head 4 is out of range"),
    ({"layer": 0, "head": 0, "query": 40}, "query position 40 is out of range"),
    ({"layer": 0, "head": 0, "key": -40}, "key position -40 is out of range"),
    ({"layer": 0, "head": 0, "query": 3, "key": 5}, "comes after query position"),
])
def test_bad_input(tiny, kwargs, message):
    with pytest.raises(InputError, match=message):
        qk(tiny("llama"), PROMPT, **kwargs)


def test_empty_prompt(tiny):
    with pytest.raises(InputError, match="empty"):
        qk(tiny("llama"), "  ", layer=0, head=0)


def test_a_key_outside_the_sliding_window_is_refused(tiny):
    model = tiny("gemma3_text")  # sliding window of 16 tokens
    long = PROMPT + " Mary. " + PROMPT
    assert model.encode(long).shape[1] > 20
    with pytest.raises(InputError, match="sliding window"):
        qk(model, long, layer=0, head=0, query=-1, key=1)


def test_attention_without_query_and_key_projections_is_unsupported(tiny):
    model = tiny_model("llama")
    for layer in range(model.adapter.n_layers):
        del model.adapter.part(layer, "attn").q_proj
    with pytest.raises(UnsupportedModelError, match="queries, keys and values"):
        qk(model, PROMPT, layer=0, head=0)
    with pytest.raises(UnsupportedModelError, match="queries, keys and values"):  # fused per head
        qk(tiny("gpt_neox"), PROMPT, layer=0, head=0)


def test_json_round_trip_and_schema():
    r = qk(_sharp("gpt2"), PROMPT, layer=1, head=2, key=4)
    doc = json.loads(r.to_json())
    back = QKResult.from_dict(doc)
    assert back.to_dict() == r.to_dict()
    assert {"score", "parts", "error", "layer", "head", "query", "key", "tokens", "probability",
            "query_marginals", "key_marginals"} <= set(doc)
    values = [abs(p["value"]) for p in doc["parts"]]
    assert values == sorted(values, reverse=True) and len(values) == len(r.sources) ** 2
    assert set(doc["parts"][0]) == {"query_source", "key_source", "value"}
    assert doc["key_token"] == r.tokens[4]
    df = r.to_dataframe()
    assert len(df) == len(values) and df["value"].sum() == pytest.approx(r.parts.sum().item())


def test_schema_doc_lists_every_field():
    text = (Path(__file__).parents[3] / "docs" / "schema.md").read_text(encoding="utf-8")
    section = re.search(r"^## kind: qk\n(.*?)(?=^## |\Z)", text, re.S | re.M).group(1)
    documented = {name for cell in re.findall(r"^\| ([^|]+) \|", section, re.M)
                  for name in re.findall(r"`([^`]+)`", cell)}
    doc = qk(_sharp("llama"), PROMPT, layer=0, head=0, key=1).to_dict()
    assert set(doc) <= documented


def test_result_validation():
    r = qk(_sharp("llama"), PROMPT, layer=0, head=0, key=1)
    doc = r.to_dict()
    with pytest.raises(ValueError, match="key <= query"):
        QKResult.from_dict({**doc, "key": r.query + 1})


@pytest.fixture
def run(tiny):
    runner = CliRunner()

    def invoke(*args):
        with mock.patch("whyllm.model.load.load_model", return_value=tiny("qwen3")):
            return runner.invoke(app, list(args))

    return invoke


def test_cli_json(run):
    res = run("qk", PROMPT, "--layer", "1", "--head", "2", "--query", "-1", "--key", "3", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["kind"] == "qk" and doc["key"] == 3 and doc["layer"] == 1 and doc["error"] < 1e-4
    assert {"query_source", "key_source", "value"} == set(doc["parts"][0])


def test_cli_terminal_view_and_errors(run):
    res = run("qk", PROMPT, "--layer", "1", "--head", "0")
    assert res.exit_code == 0 and "the score of L1.H0 attending from" in " ".join(res.output.split())
    res = run("qk", PROMPT, "--layer", "1", "--head", "0", "--query", "2", "--key", "3")
    assert res.exit_code == 2 and "comes after query position" in " ".join(res.output.split())
    res = run("qk", PROMPT, "--head", "0")
    assert res.exit_code == 2 and "--layer" in res.output
