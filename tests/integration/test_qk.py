"""QK attribution on the real default model (Gemma 3 270M): figures documented in docs/circuits.md."""

import math

import pytest
import torch

from whyllm.methods.attention import attention
from whyllm.methods.qk import qk

IOI = "When Mary and John went to the store, John gave a drink to"
MARY, JOHN, S2, END = 2, 4, 10, 14  # " Mary", the first and the second " John", the last " to"


@pytest.fixture(scope="module")
def name_mover(gemma):
    """L12.H1 (a name-mover-like head: the second largest direct effect on " Mary") from END to each name."""
    return {k: qk(gemma, IOI, layer=12, head=1, query=END, key=k) for k in (MARY, JOHN, S2)}


def test_parts_sum_to_the_real_score(name_mover):
    for r in name_mover.values():
        assert r.error < 1e-3 * abs(r.score)  # measured: about 1e-7 relative in float32
        assert r.weights_check < 1e-4
        assert r.parts.shape == (62, 62)  # embed, 12 layers x (4 heads + MLP), bias
        assert "q_norm and k_norm" in r.linearisation


def test_scores_match_the_models_attention_weights(gemma, name_mover):
    weights = attention(gemma, IOI, layers=[12], heads=[1]).patterns[0, 0, END]  # (key,)
    mary, s2 = name_mover[MARY], name_mover[S2]
    assert mary.probability == pytest.approx(float(weights[MARY]), abs=1e-5)
    assert mary.score - s2.score == pytest.approx(math.log(weights[MARY] / weights[S2]), abs=1e-3)
    assert mary.score == pytest.approx(9.74, abs=0.01) and mary.probability == pytest.approx(0.419, abs=1e-3)
    assert s2.score == pytest.approx(7.11, abs=0.01)


def test_the_head_attends_to_mary_because_of_late_mlps(gemma, name_mover):
    assert qk(gemma, IOI, layer=12, head=1).key == MARY  # the default key: the most attended
    mary, s2 = name_mover[MARY], name_mover[S2]
    assert mary.ranked(1)[0][:2] == ("L10.mlp", "L11.mlp")
    diff = mary.parts - s2.parts  # why Mary rather than the repeated John
    assert float(diff.sum()) == pytest.approx(mary.score - s2.score, abs=1e-4)
    key_side = diff.sum(0)
    assert mary.sources[int(key_side.argmax())] == "L11.mlp"
    assert float(torch.topk(diff.sum(1), 1).values) > 0.9  # L10.mlp at the query
