"""Terminal (rich) and HTML views of the core results."""

from __future__ import annotations

import pytest

from tests.helpers.render import plain_text as _text
from whyllm.methods.generate import generate, sample
from whyllm.methods.predict import predict
from whyllm.render.dispatch import terminal as view
from whyllm.render.html import fragment, page
from whyllm.render.terminal import step_note
from whyllm.results.generate import GenerationResult, Step
from whyllm.results.predict import Candidate, PredictResult

PROMPT = "The capital of France is"
HOSTILE = "</script><img onerror=alert(1)>"




def _cand(token, rank, prob):
    return Candidate(token=token, id=rank, prob=prob, logprob=-1.0, rank=rank)


def _step(i, token, prob, rank):
    return Step(index=i, token=token, id=10 + i, prob=prob, logprob=-1.0, sample_prob=prob, rank=rank,
                entropy=1.5, kept=100, alternatives=(_cand(" Paris", 1, 0.8), _cand(HOSTILE, 2, 0.1)))


GEN = GenerationResult(prompt=HOSTILE, prompt_ids=(1, 2), text=" Paris<b>", stop_reason="length",
                       settings={"seed": 3}, steps=(_step(0, " Paris", 0.8, 1), _step(1, "<b>", 0.01, 7)),
                       meta={"model": "m"})


@pytest.fixture(scope="module")
def model():
    from whyllm.model.tiny import tiny_model

    return tiny_model("llama")


def test_predict_view(model):
    out = _text(predict(model, PROMPT, target=" Paris", top_k=4))
    assert "next token after The capital of France is" in out
    for word in ("rank", "token", "prob", "logprob", "entropy:", "target ␣Paris", "rank of first token"):
        assert word in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_predict_view_multi_token_target(model):
    out = _text(predict(model, PROMPT, target=" Paris. The dog"))
    assert "per target token" in out and "␣dog" in out


def test_generation_view_marks_unlikely_picks():
    out = _text(GEN)
    assert "␣Paris" in out and "unlikely" in out
    assert "stopped: length; seed=3" in out
    assert step_note(GEN.steps[0]) == "" and step_note(GEN.steps[1]) == "unlikely"
    row = next(line for line in out.splitlines() if "unlikely" in line and "<b>" in line)
    assert " 7 " in row and "0.010" in row and "␣Paris .80" in out


def test_generation_view_on_a_model(model):
    res = generate(model, PROMPT, max_new_tokens=4, seed=0)
    out = _text(res)
    assert out.startswith(PROMPT) and "alternatives" in out


def test_samples_view(model):
    res = sample(model, PROMPT, n=4, max_new_tokens=4, seed=0, temperature=2.0)
    out = _text(view(res))
    first = res.tree["children"][0]
    assert "4 samples" in out and "branch point" in out and f"({len(first['samples'])} of 4)" in out
    for i in range(len(res.samples)):
        assert f"{i}: " in out


def test_unknown_object_falls_back_to_repr():
    assert "42" in _text(view(42))


def test_html_escapes_everything():
    res = PredictResult(prompt=HOSTILE, input_ids=(1,), input_tokens=("<bos>",),
                        top=(_cand(HOSTILE, 1, 0.9),), entropy=0.3, meta={"model": HOSTILE})
    for html in (page(res), page(GEN), fragment(res), res._repr_html_(), GEN.to_html()):
        assert "<img" not in html and "</script>" not in html.lower().replace("</style>", "")
        assert "&lt;/script&gt;&lt;img onerror=alert(1)&gt;" in html or "&lt;/script&gt;&lt;img" in html


def test_html_page_is_self_contained(model, tmp_path):
    res = sample(model, PROMPT, n=3, max_new_tokens=3, seed=0)
    text = res.to_html(tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == text
    assert text.startswith("<!doctype html>") and "Content-Security-Policy" in text
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_fragment_is_a_whyllm_div(model):
    assert fragment(predict(model, PROMPT)).startswith('<div class="whyllm">')
