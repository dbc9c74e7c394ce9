"""predict(): the next-token distribution and continuation scores, checked against manual forwards."""

from __future__ import annotations

import math

import pytest
import torch

from whyllm.errors import InputError, PromptTooLongError
from whyllm.methods.predict import predict, rank_of
from whyllm.model.hooks import n_hooks

PROMPT = "The capital of France is"


def _manual_logprobs(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model.hf(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)  # (pos, vocab)


def test_distribution_top_and_entropy(any_tiny):
    res = predict(any_tiny, PROMPT, top_k=7)
    ref = _manual_logprobs(any_tiny, list(res.input_ids))[-1]
    assert res.input_ids[0] == any_tiny.tokenizer.bos_token_id
    torch.testing.assert_close(res.logprobs, ref)
    assert res.probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert res.logprobs.shape == (any_tiny.adapter.d_vocab,)
    values, ids = ref.topk(7)
    assert [c.id for c in res.top] == ids.tolist()
    assert [c.rank for c in res.top] == list(range(1, 8))
    assert all(a.prob >= b.prob for a, b in zip(res.top, res.top[1:], strict=False))
    for c, v in zip(res.top, values, strict=True):
        assert c.logprob == pytest.approx(v.item(), abs=1e-6)
        assert c.prob == pytest.approx(math.exp(v.item()), rel=1e-6)
        assert c.token == any_tiny.tokenizer.decode([c.id])
    p = ref.exp()
    assert res.entropy == pytest.approx(-(p * ref).sum().item(), abs=1e-5)
    assert res.target is None
    assert n_hooks(any_tiny.hf) == 0


def test_single_token_target(tiny):
    model = tiny("llama")
    target_id = model.tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    assert len(target_id) == 1
    res = predict(model, PROMPT, target=" Paris")
    lp = res.logprobs
    assert res.target.ids == tuple(target_id)
    assert res.target.logprob == pytest.approx(lp[target_id[0]].item(), abs=1e-6)
    assert res.target.rank == int((lp > lp[target_id[0]]).sum()) + 1
    assert res.target.prob == pytest.approx(math.exp(res.target.logprob))


def test_multi_token_target_matches_manual_forward(any_tiny):
    target = " Paris. The dog did not move"
    res = predict(any_tiny, PROMPT, target=target)
    t = res.target
    assert len(t.ids) > 1
    assert any_tiny.tokenizer.decode(list(t.ids)) == target
    full = list(res.input_ids) + list(t.ids)
    lp = _manual_logprobs(any_tiny, full)
    start = len(res.input_ids) - 1
    expected = [lp[start + j, tok].item() for j, tok in enumerate(t.ids)]
    assert list(t.logprobs) == pytest.approx(expected, abs=1e-5)
    assert t.logprob == pytest.approx(sum(t.logprobs), abs=1e-9)
    assert t.logprob == pytest.approx(sum(expected), abs=1e-4)
    assert list(t.ranks) == [rank_of(lp[start + j], tok) for j, tok in enumerate(t.ids)]
    # the next-token distribution is the one after the prompt alone
    torch.testing.assert_close(res.logprobs, _manual_logprobs(any_tiny, list(res.input_ids))[-1],
                               atol=1e-5, rtol=1e-5)


def test_rank_of_counts_ties_in_favour():
    lp = torch.tensor([-1.0, -2.0, -1.0, -3.0])
    assert [rank_of(lp, i) for i in range(4)] == [1, 3, 1, 4]


@pytest.mark.parametrize("target", ["", "<unk>"])
def test_target_that_does_not_tokenize(tiny, target):
    model = tiny("llama")
    with pytest.raises(InputError, match="target"):
        predict(model, PROMPT, target=target)
    assert n_hooks(model.hf) == 0


@pytest.mark.parametrize("prompt", ["", "   ", "\n", None, 42])
def test_empty_prompt(tiny, prompt):
    with pytest.raises(InputError, match="empty"):
        predict(tiny("llama"), prompt)


def test_prompt_longer_than_context(tiny):
    model = tiny("gpt2")
    with pytest.raises(PromptTooLongError, match="accepts at most 128"):
        predict(model, "one two three four " * 100)


def test_prompt_plus_target_longer_than_context(tiny):
    model = tiny("llama")
    prompt = "The dog " * 60  # fits alone, not with the target
    assert len(model.encode(prompt)[0]) <= 128
    with pytest.raises(PromptTooLongError):
        predict(model, prompt, target=" The dog did not move." * 10)


def test_top_k_validated(tiny):
    with pytest.raises(InputError, match="top_k"):
        predict(tiny("llama"), PROMPT, top_k=0)


def test_top_k_up_to_the_vocabulary(tiny):
    model = tiny("llama")
    res = predict(model, PROMPT, top_k=model.adapter.d_vocab)
    assert len(res.top) == model.adapter.d_vocab
    assert sum(c.prob for c in res.top) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(InputError, match="top_k must be at most 500"):
        predict(model, PROMPT, top_k=10_000)


def test_meta_records_the_call(tiny):
    res = predict(tiny("qwen2"), PROMPT, target=" Paris", top_k=3)
    assert res.meta["model"] == "tiny-qwen2"
    assert res.meta["method"] == "predict"
    assert res.meta["params"] == {"top_k": 3, "target": " Paris"}
