import pytest
import torch

from tests.helpers.internals import boom
from whyllm.errors import InputError
from whyllm.methods.attention import attention
from whyllm.methods.components import components
from whyllm.model.hooks import intervene, n_hooks
from whyllm.results.internals import AttentionResult

PROMPT = "The capital of France is"


def test_patterns_are_causal_distributions(any_tiny):
    r = attention(any_tiny, PROMPT)
    n = len(r.tokens)
    assert r.patterns.shape == (any_tiny.adapter.n_layers, any_tiny.adapter.n_heads, n, n)
    torch.testing.assert_close(r.patterns.sum(-1), torch.ones(r.patterns.shape[:-1]), atol=1e-5, rtol=0)
    assert float(r.patterns.triu(1).abs().max()) == 0.0  # no query attends to a later key
    assert any_tiny.hf.config._attn_implementation == "sdpa"  # restored


def test_importance_is_the_heads_direct_logit_attribution(tiny):
    m = tiny("qwen3")
    r = attention(m, PROMPT, target=" Paris")
    torch.testing.assert_close(r.importance, components(m, PROMPT, target=" Paris").head_values)


def test_selection_and_truncation(tiny):
    m = tiny("gpt_neox")
    full = attention(m, PROMPT)
    part = attention(m, PROMPT, layers=[-1], heads=[2, 0], max_tokens=3)
    assert part.layers == (1,) and part.heads == (2, 0) and part.offset == len(full.tokens) - 3
    torch.testing.assert_close(part.patterns[0, 0], full.patterns[1, 2, -3:, -3:])
    torch.testing.assert_close(part.pattern(1, 0), full.patterns[1, 0, -3:, -3:])
    torch.testing.assert_close(part.importance, full.importance[[1]][:, [2, 0]])


def test_json_round_trip_and_dataframe(tiny):
    r = attention(tiny("llama"), PROMPT, layers=[0], heads=[1])
    doc = r.to_dict()
    assert doc["kind"] == "attention" and doc["heads"][0]["name"] == "L0.H1"
    back = AttentionResult.from_dict(doc)
    torch.testing.assert_close(back.patterns, r.patterns, atol=1e-5, rtol=0)
    n = len(r.tokens)
    assert len(r.to_dataframe()) == n * (n + 1) // 2  # causal cells only


@pytest.mark.parametrize("kwargs", [{"layers": [2]}, {"heads": [4]}, {"heads": [-5]}, {"max_tokens": 0},
                                    {"layers": []}])
def test_bad_arguments(tiny, kwargs):
    with pytest.raises(InputError, match="out of range|at least|positive"):
        attention(tiny("llama"), PROMPT, **kwargs)


def test_no_hooks_left_and_attention_restored(tiny):
    m = tiny("gemma3_text")
    attention(m, PROMPT)
    assert n_hooks(m.hf) == 0
    with pytest.raises(RuntimeError), intervene({m.adapter.part(0, "mlp"): boom}):
        attention(m, PROMPT)
    assert n_hooks(m.hf) == 0 and m.hf.config._attn_implementation == "sdpa"
