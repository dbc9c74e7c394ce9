"""The feedback loop on the real Gemma 3 270M: store, tune (DPO + LoRA), diff, attribute.

The data (tests/integration/feedback_data.py, also the worked example of docs/feedback.md) holds two
kinds of feedback: one-word answers preferred over full sentences (style) and two invented facts
(fact). One tuning run of 8 steps and one diff of 6 prompts are shared by the tests (19 minutes of wall
time on 2 cores shared with ~7 other busy processes, about 8.5 CPU-minutes).
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import feedback_data as data
from whyllm import feedback as fb
from whyllm.feedback.diff import diff
from whyllm.feedback.influence import pair_logprob
from whyllm.feedback.tune import tune
from whyllm.model.adapters import load_adapter

STEPS, LR = 8, 1e-4


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """(adapted model, {feedback id: kind}, diff result of held-out + unrelated prompts)."""
    import whyllm

    torch.set_num_threads(2)
    work = tmp_path_factory.mktemp("feedback")
    db = work / "fb.sqlite"
    model = whyllm.load_model(progress=False)  # its own copy: the adapter is loaded into it in place
    kinds = {}
    for item in data.items():
        kind = item.pop("kind")
        kinds[fb.add_feedback(model, **item, source="cli", db=db)["id"]] = kind
    result = tune(model, db, out=work / "adapter", method="dpo", steps=STEPS, learning_rate=LR,
                  checkpoint_every=STEPS, progress=False)
    assert result.steps == STEPS and len(result.feedback_ids) == len(kinds)
    adapted = load_adapter(model, work / "adapter")
    prompts = [p for _, p, _, _ in _held_out()] + data.UNRELATED[:2]
    return adapted, kinds, diff(adapted, prompts, max_new_tokens=4)


def _held_out():
    """Two held-out prompts of each kind (diff costs about 25 forward passes per prompt)."""
    held = data.held_out()
    return [h for h in held if h[0] == "style"][:2] + [h for h in held if h[0] == "fact"][:2]


def _lps(model, prompt: str, good: str, bad: str) -> tuple[float, float]:
    """Log-probabilities of two continuations (one batched pass)."""
    with torch.no_grad():
        both = pair_logprob(model, prompt, model.encode_continuation(good), model.encode_continuation(bad))
    return float(both[0]), float(both[1])


def _margins(model, rows):
    with model.base():
        base = [_lps(model, *row) for row in rows]
    return [g - b for g, b in base], [g - b for g, b in (_lps(model, *row) for row in rows)]


def test_training_items_chosen_rises_rejected_falls(loop):
    model = loop[0]
    rows = [(it["prompt"], it["correction"], it["completion"]) for it in data.items()]
    with model.base():
        base = [_lps(model, *row) for row in rows]
    up = down = 0
    for row, (bg, bb) in zip(rows, base, strict=True):
        tg, tb = _lps(model, *row)
        up += tg > bg
        down += tb < bb
    print(json.dumps({"train_chosen_up": up, "train_rejected_down": down, "n": len(rows)}))
    assert up >= 0.9 * len(rows) and down >= 0.9 * len(rows)


def test_held_out_prompts_shift_the_same_way(loop):
    model = loop[0]
    rows = [(p, good, bad) for _, p, good, bad in data.held_out()]
    base, tuned = _margins(model, rows)
    pairs = [[round(b, 2), round(t, 2)] for b, t in zip(base, tuned, strict=True)]
    print(json.dumps({"held_out_margins": pairs}))
    assert all(t > b + 1.0 for b, t in zip(base, tuned, strict=True))


def test_diff_ranks_feedback_of_the_same_kind_first(loop):
    _, kinds, result = loop
    held = _held_out()
    rate = {}
    for kind in ("style", "fact"):
        tops = [kinds[f["id"]] for (k, *_), d in zip(held, result.prompts, strict=False) if k == kind
                for f in d.feedback[:5]]
        rate[kind] = sum(t == kind for t in tops) / len(tops)
        chance = sum(k == kind for k in kinds.values()) / len(kinds)
        print(json.dumps({"kind": kind, "top5_same_kind": rate[kind], "chance": chance}))
        assert rate[kind] > chance, kind


def test_unrelated_prompts_move_less(loop):
    result = loop[2]
    n = len(_held_out())
    related = [d.kl for d in result.prompts[:n]]
    unrelated = [d.kl for d in result.prompts[n:]]
    print(json.dumps({"kl_related": related, "kl_unrelated": unrelated}))
    assert sum(unrelated) / len(unrelated) < sum(related) / len(related)
    d = result.prompts[0]  # a held-out style question: the one-word answer gained
    assert d.layers[-1]["kl"] == pytest.approx(d.kl, rel=1e-3) and d.components and d.feedback
