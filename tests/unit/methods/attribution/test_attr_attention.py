"""Attention scores against weights captured independently, and the attention switch being restored."""

import pytest
import torch

from tests.helpers.attribution import PROMPT
from whyllm.methods.attribution import explain
from whyllm.model.hooks import n_hooks
from whyllm.model.tiny import tiny_model


def _weights(ids):
    """Head-mean attention per layer from output_attentions=True, on a separate copy of the model.

    (output_attentions makes transformers install permanent hooks, so never on the shared fixture.)
    """
    model = tiny_model("llama")
    model.hf.set_attn_implementation("eager")
    with torch.no_grad():
        att = model.hf(input_ids=ids, output_attentions=True).attentions
    return [a[0].mean(0) for a in att]  # (pos, pos) per layer


def test_last_layer_attention(llama):
    r = explain(llama, PROMPT, method="attention", faithfulness=False)
    want = _weights(llama.encode(PROMPT))[-1][-1]
    torch.testing.assert_close(r.token_scores[1:], want[1:], rtol=1e-5, atol=1e-6)
    assert llama.hf.config._attn_implementation == "sdpa" and n_hooks(llama.hf) == 0


def test_rollout(llama):
    r = explain(llama, PROMPT, method="attention_rollout", faithfulness=False)
    layers = _weights(llama.encode(PROMPT))
    eye = torch.eye(layers[0].shape[0])
    roll = eye
    for a in layers:
        a = 0.5 * a + 0.5 * eye
        roll = (a / a.sum(-1, keepdim=True)) @ roll
    torch.testing.assert_close(r.token_scores[1:], roll[-1, 1:], rtol=1e-5, atol=1e-6)
    assert float(roll[-1].sum()) == pytest.approx(1.0, abs=1e-5)  # a distribution over the input


def test_attention_ignores_the_foil(llama):
    a = explain(llama, PROMPT, target=" Mary", method="attention", faithfulness=False)
    b = explain(llama, PROMPT, target=" Mary", foil=" John", method="attention", faithfulness=False)
    torch.testing.assert_close(a.token_scores, b.token_scores)
