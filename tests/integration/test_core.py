"""The core on the real default model (Gemma 3 270M): known predictions, determinism, the CLI."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

import whyllm

MARY = "When Mary and John went to the store, John gave a drink to"


def test_default_model_shape_and_parity(gemma):
    a = gemma.adapter
    assert gemma.name == whyllm.DEFAULT_MODEL
    sizes = (a.n_layers, a.n_heads, a.n_kv_heads, a.d_head, a.d_model, a.d_vocab)
    assert sizes == (18, 4, 1, 256, 640, 262144)
    assert a.check_parity(gemma.encode("The capital of France is")) < 1e-3


def test_ioi_mary_is_the_top_token(gemma):
    res = whyllm.predict(gemma, MARY, target=" Mary")
    assert res.top[0].token == " Mary"
    assert res.target.rank == 1


def test_paris_in_top_five(gemma):
    res = whyllm.predict(gemma, "The capital of France is", top_k=5)
    assert " Paris" in [c.token for c in res.top]


def test_same_seed_same_generation(gemma):
    kw = dict(max_new_tokens=4, temperature=0.8, top_p=0.95, seed=123)
    a = whyllm.generate(gemma, "The capital of France is", **kw)
    b = whyllm.generate(gemma, "The capital of France is", **kw)
    assert a.ids == b.ids and a.text == b.text
    assert [s.prob for s in a.steps] == [s.prob for s in b.steps]


def test_greedy_matches_transformers_generate(gemma):
    prompt = "The capital of France is"
    greedy = whyllm.generate(gemma, prompt, max_new_tokens=4, greedy=True)
    ids = gemma.encode(prompt)
    with torch.no_grad():
        ref = gemma.hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=4, min_new_tokens=4, pad_token_id=0)
    assert list(greedy.ids) == ref[0, ids.shape[1]:].tolist()


def test_cli_predict_json(gemma, monkeypatch):
    from whyllm.cli import app
    from whyllm.model import load as load_mod

    asked = []
    monkeypatch.setattr(load_mod, "load_model", lambda name=None, **kw: asked.append(name) or gemma)
    res = CliRunner().invoke(app, ["predict", "The capital of France is", "--target", " Paris", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert asked == [None]  # no --model: the default
    assert doc["model"] == "gemma-3-270m" and doc["kind"] == "predict"
    assert " Paris" in [c["token"] for c in doc["top"][:5]]
    assert doc["target"]["rank"] <= 5 and 0 < doc["target"]["prob"] < 1
