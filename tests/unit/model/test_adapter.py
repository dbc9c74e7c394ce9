"""ModelAdapter on every tiny architecture: sizes, parity, read-out, frozen norms, unknown models."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from whyllm.errors import InputError, ParityError, UnsupportedModelError
from whyllm.model import architectures
from whyllm.model.adapter import ModelAdapter, _discover
from whyllm.model.hooks import capture, n_hooks
from whyllm.model.tiny import tiny_model

PROMPT = "The capital of France is Paris."

# What tiny_model builds (d_model 64, 2 layers, 4 heads, 2 kv heads, n_ctx 128; MLP 2x or 4x).
SIZES = {
    "llama": (2, 4, 2, 16, 128), "mistral": (2, 4, 2, 16, 128), "qwen2": (2, 4, 2, 16, 128),
    "qwen3": (2, 4, 2, 16, 128), "gemma3_text": (2, 4, 2, 16, 128), "phi3": (2, 4, 2, 16, 128),
    "gpt2": (2, 4, 4, 16, 256), "gpt_neox": (2, 4, 4, 16, 256),
}


def _arch(model) -> str:
    return model.name.removeprefix("tiny-")


def _last_block_and_logits(model, ids):
    with torch.no_grad(), capture({"last": model.adapter.blocks[-1]}) as acts:
        logits = model.hf(input_ids=ids).logits
    return acts["last"], logits


def test_sizes(any_tiny):
    a = any_tiny.adapter
    assert (a.n_layers, a.n_heads, a.n_kv_heads, a.d_head, a.d_mlp) == SIZES[_arch(any_tiny)]
    assert a.d_model == 64
    assert a.d_vocab == len(any_tiny.tokenizer) == any_tiny.hf.config.vocab_size
    assert a.n_ctx == 128
    assert a.head_out_weight(0).shape == (a.n_heads, a.d_head, a.d_model)
    assert a.mlp_down_weight(0).shape == (a.d_mlp, a.d_model)
    assert a.parallel_residual == (_arch(any_tiny) == "gpt_neox")
    assert (a.pos_embed is not None) == (_arch(any_tiny) == "gpt2")


def test_parts_are_modules_of_each_block(any_tiny):
    a = any_tiny.adapter
    for layer in range(a.n_layers):
        for name in ("ln1", "ln2", "attn", "attn_o", "mlp", "mlp_down", "attn_out", "mlp_out"):
            part = a.part(layer, name)
            assert any(part is m for m in a.blocks[layer].modules())
    with pytest.raises(InputError, match="out of range"):
        a.part(a.n_layers, "attn")


def test_parity_passes(any_tiny):
    ids = any_tiny.encode(PROMPT)
    assert any_tiny.adapter.check_parity(ids) <= 1e-4
    assert n_hooks(any_tiny.hf) == 0


def test_logits_from_resid_equals_model_logits(any_tiny):
    ids = any_tiny.encode(PROMPT)
    resid, logits = _last_block_and_logits(any_tiny, ids)
    with torch.no_grad():
        mine = any_tiny.adapter.logits_from_resid(resid)
    torch.testing.assert_close(mine, logits, atol=1e-5, rtol=1e-5)


def test_gemma_softcap_is_applied(tiny):
    model = tiny("gemma3_text")
    assert model.adapter.softcap == 30.0
    ids = model.encode(PROMPT)
    resid, logits = _last_block_and_logits(model, ids)
    with torch.no_grad():
        raw = model.adapter.unembed(model.adapter.ln_final(resid))
    assert logits.abs().max() < 30.0
    torch.testing.assert_close(logits, torch.tanh(raw / 30.0) * 30.0, atol=1e-5, rtol=1e-5)


def test_output_projection_weights_reproduce_module(any_tiny):
    """head_out_weight / mlp_down_weight are the projections laid out as (in, out)."""
    a = any_tiny.adapter
    heads = torch.randn(3, a.n_heads * a.d_head)
    neurons = torch.randn(3, a.d_mlp)
    with torch.no_grad():
        for name, x, w in [("attn_o", heads, a.head_out_weight(0).reshape(-1, a.d_model)),
                           ("mlp_down", neurons, a.mlp_down_weight(0))]:
            bias = a.out_bias(0, name)
            expected = a.part(0, name)(x)
            torch.testing.assert_close(x @ w + (0 if bias is None else bias), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("where", ["ln_final", "ln1"])
def test_frozen_norm_parts_sum_to_norm_output(any_tiny, where):
    a = any_tiny.adapter
    norm = a.ln_final if where == "ln_final" else a.part(1, "ln1")
    ids = any_tiny.encode(PROMPT)
    with torch.no_grad(), capture({"x": norm}, inputs=True) as acts:
        any_tiny.hf(input_ids=ids)
    x = acts["x"]  # (1, pos, d_model)
    apply = a.frozen_norm(norm, x)
    torch.manual_seed(0)
    parts = [torch.randn_like(x), torch.randn_like(x)]
    parts.append(x - parts[0] - parts[1])
    with torch.no_grad():
        real = norm(x).float()
        bias = getattr(norm, "bias", None)
        if bias is not None:
            real = real - bias.float()
        total = sum(apply(p) for p in parts)
    torch.testing.assert_close(total, real, atol=1e-4, rtol=1e-4)
    # linear in its argument: the map of a scaled part is the scaled map
    torch.testing.assert_close(apply(2 * parts[0]), 2 * apply(parts[0]), atol=1e-5, rtol=1e-5)


def test_broken_readout_raises_parity_error(tiny, monkeypatch):
    model = tiny("gemma3_text")
    ids = model.encode(PROMPT)
    monkeypatch.setattr(ModelAdapter, "softcap", property(lambda self: 0.5))
    with pytest.raises(ParityError, match="differs from the model's logits"):
        model.adapter.check_parity(ids)
    assert n_hooks(model.hf) == 0


def test_missing_softcap_raises_parity_error(monkeypatch):
    model = tiny_model("gemma3_text", seed=3)
    with torch.no_grad():  # large logits, so forgetting the soft-capping is a visible mismatch
        model.adapter.unembed.weight.mul_(40.0)
    ids = model.encode(PROMPT)
    model.adapter.check_parity(ids)
    monkeypatch.setattr(ModelAdapter, "softcap", property(lambda self: None))
    with pytest.raises(ParityError, match="gemma3_text"):
        model.adapter.check_parity(ids)


def test_wrong_final_norm_raises_parity_error(monkeypatch):
    model = tiny_model("llama", seed=1)
    ids = model.encode(PROMPT)
    model.adapter.ln_final = model.adapter.part(0, "ln1")  # a plausible but wrong module
    with pytest.raises(ParityError):
        model.adapter.check_parity(ids)


def test_nan_readout_is_a_parity_error():
    model = tiny_model("llama", seed=2)
    ids = model.encode(PROMPT)
    with torch.no_grad():
        model.adapter.unembed.weight[5, 0] = float("nan")
    with pytest.raises(ParityError):
        model.adapter.check_parity(ids)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2", "gpt_neox", "phi3"])
def test_structural_discovery_matches_table(arch, monkeypatch):
    model = tiny_model(arch)
    known = architectures.architecture_for(model.hf.config.model_type)
    monkeypatch.delitem(architectures._REGISTRY, model.hf.config.model_type)
    assert architectures.architecture_for(model.hf.config.model_type) is None
    found = ModelAdapter(model.hf)
    for field in ("embed", "pos_embed", "blocks", "ln_final", "ln1", "ln2", "attn", "attn_o", "mlp",
                  "mlp_down", "attn_out", "mlp_out"):
        assert getattr(found.spec, field) == getattr(known, field), field
    assert found.parallel_residual == (arch == "gpt_neox")
    found.check_parity(model.encode(PROMPT))


def test_registered_away_type_with_renamed_parts_is_unsupported(monkeypatch):
    model = tiny_model("llama")
    monkeypatch.delitem(architectures._REGISTRY, "llama")
    for block in model.hf.model.layers:  # rename the MLP so neither the table nor the search finds it
        block.ffwd = block.mlp
        del block.mlp
    with pytest.raises(UnsupportedModelError, match="MLP module") as err:
        ModelAdapter(model.hf)
    assert "llama" in str(err.value) and "register_architecture" in str(err.value)


class _Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.mixer = nn.Linear(d, d)
        self.ffwd = nn.Linear(d, d)

    def forward(self, x):
        return x + self.ffwd(torch.relu(self.mixer(x)))


class _CustomLM(nn.Module):
    """A causal LM that follows no known layout."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(10, 8)
        self.layers = nn.ModuleList([_Block(8) for _ in range(2)])
        self.head = nn.Linear(8, 10)

    def get_input_embeddings(self):
        return self.wte

    def get_output_embeddings(self):
        return self.head


def test_custom_module_names_what_is_missing():
    model = _CustomLM(types.SimpleNamespace(model_type="custom-lm", hidden_size=8, num_attention_heads=2))
    with pytest.raises(UnsupportedModelError) as err:
        ModelAdapter(model)
    text = str(err.value)
    for missing in ("attention module", "MLP module", "final norm", "custom-lm"):
        assert missing in text


def test_custom_module_without_config():
    with pytest.raises(UnsupportedModelError, match="no config"):
        ModelAdapter(_CustomLM(None))


def test_module_without_blocks():
    model = nn.Linear(2, 2)
    model.config = types.SimpleNamespace(model_type="linear")
    with pytest.raises(UnsupportedModelError, match="no list of transformer blocks"):
        _discover(model)


def test_encoder_is_rejected():
    from transformers import BertConfig, BertLMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # BERT warns that it is not a decoder: exactly the point
    try:
        bert = BertLMHeadModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                          num_attention_heads=2, intermediate_size=32))
    finally:
        hf_logging.set_verbosity_warning()
    with pytest.raises(UnsupportedModelError):
        ModelAdapter(bert)


def test_register_architecture_teaches_a_new_type(monkeypatch):
    model = tiny_model("qwen2")
    monkeypatch.delitem(architectures._REGISTRY, "qwen2")
    model.hf.config.model_type = "my-qwen"
    monkeypatch.setitem(architectures._REGISTRY, "my-qwen", architectures._LLAMA_LIKE)
    assert ModelAdapter(model.hf).spec is architectures._LLAMA_LIKE
