import pytest
import torch

from tests.helpers.internals import boom
from whyllm.errors import InputError
from whyllm.methods import lens as lens_module
from whyllm.methods.lens import logit_lens
from whyllm.model.hooks import intervene, n_hooks
from whyllm.model.tiny import tiny_model
from whyllm.results.internals import LensResult

PROMPT = "The capital of France is"


def _real_logprobs(model, prompt):
    with torch.no_grad():
        return model.hf(input_ids=model.encode(prompt)).logits[0].float().log_softmax(-1)  # (pos, vocab)


def test_last_layer_reproduces_the_model(any_tiny):
    r = logit_lens(any_tiny, PROMPT, target=" Paris", top_k=3)
    lp = _real_logprobs(any_tiny, PROMPT)
    top = lp.topk(3)
    assert r.layer_names[0] == "embed" and len(r.layer_names) == any_tiny.adapter.n_layers + 1
    assert torch.equal(r.top_ids[-1], top.indices)
    torch.testing.assert_close(r.top_probs[-1], top.values.exp(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(r.target_probs[-1], lp[:, r.target_id].exp(), atol=1e-6, rtol=1e-5)
    want_rank = (lp > lp[:, r.target_id : r.target_id + 1]).sum(-1) + 1
    assert torch.equal(r.target_ranks[-1], want_rank)


def test_soft_capped_read_out_is_the_models():
    m = tiny_model("gemma3_text", seed=3)
    m.hf.config.final_logit_softcapping = 0.05  # strong capping, so a missing cap would show
    r = logit_lens(m, PROMPT, top_k=2)
    want = _real_logprobs(m, PROMPT).topk(2).values.exp()
    torch.testing.assert_close(r.top_probs[-1], want, atol=1e-6, rtol=1e-5)


def test_embedding_row_decodes_the_embeddings(tiny):
    m = tiny("gpt2")
    r = logit_lens(m, PROMPT, top_k=1)
    ids = m.encode(PROMPT)
    with torch.no_grad():
        resid = m.adapter.embed(ids) + m.adapter.pos_embed(torch.arange(ids.shape[1])[None])
        want = m.adapter.logits_from_resid(resid)[0].softmax(-1).max(-1)
    torch.testing.assert_close(r.top_probs[0, :, 0], want.values, atol=1e-6, rtol=1e-5)


def test_positions_select_columns_of_the_full_grid(tiny):
    m = tiny("qwen2")
    full = logit_lens(m, PROMPT, target=" Paris")
    part = logit_lens(m, PROMPT, target=" Paris", positions=[-1, 2])
    assert part.positions == (2, 5)  # sorted: the last column is the last position
    assert torch.equal(part.top_ids, full.top_ids[:, [2, 5]])
    torch.testing.assert_close(part.target_probs, full.target_probs[:, [2, 5]])


def test_small_chunks_give_the_same_grid(tiny, monkeypatch):
    m = tiny("llama")
    whole = logit_lens(m, PROMPT, target=" Paris")
    monkeypatch.setattr(lens_module, "_CHUNK_ELEMENTS", 1)  # one position at a time
    chunked = logit_lens(m, PROMPT, target=" Paris")
    assert torch.equal(whole.top_ids, chunked.top_ids)
    torch.testing.assert_close(whole.entropy, chunked.entropy)


def test_json_round_trip_and_dataframe(tiny):
    r = logit_lens(tiny("llama"), PROMPT, target=" Paris", top_k=2)
    doc = r.to_dict()
    assert doc["kind"] == "lens" and doc["model"] == "tiny-llama"
    first = doc["layers"][0]
    assert first["name"] == "embed" and len(first["top"]) == 2
    assert {"target_prob", "target_rank"} <= set(first)
    back = LensResult.from_dict(doc)
    assert back.top_tokens == r.top_tokens and torch.equal(back.top_ids, r.top_ids)
    torch.testing.assert_close(back.target_probs, r.target_probs, atol=1e-6, rtol=0)
    df = r.to_dataframe()
    assert len(df) == len(r.layer_names) * len(r.positions) and "target_prob" in df
    assert "layers" in logit_lens(tiny("llama"), PROMPT).to_dict()


@pytest.mark.parametrize("kwargs", [{"top_k": 0}, {"positions": [99]}, {"positions": []}, {"target": ""}])
def test_bad_arguments(tiny, kwargs):
    with pytest.raises(InputError):
        logit_lens(tiny("llama"), PROMPT, **kwargs)


def test_no_hooks_left(tiny):
    m = tiny("llama")
    logit_lens(m, PROMPT)
    assert n_hooks(m.hf) == 0
    with pytest.raises(RuntimeError), intervene({m.adapter.blocks[1]: boom}):
        logit_lens(m, PROMPT)
    assert n_hooks(m.hf) == 0
