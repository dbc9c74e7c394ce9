"""generate() / sample(): decoding settings, determinism, KV-cache parity, EOS, divergence tree."""

from __future__ import annotations

import math

import pytest
import torch

from whyllm.errors import InputError, PromptTooLongError
from whyllm.methods.generate import DecodingSettings, _draw, generate, sample, sampling_distribution
from whyllm.model.hooks import intervene, n_hooks
from whyllm.model.tiny import tiny_model

PROMPT = "The capital of France is"
EOS = 2


def _settings(**kw) -> DecodingSettings:
    return DecodingSettings(**{"max_new_tokens": 4, **kw})


# ---- settings and the sampled distribution, by hand -------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    ({"temperature": -0.1}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": float("inf")}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"top_p": -0.2}, "top_p"), ({"top_k": 0}, "top_k"), ({"top_k": -3}, "top_k"), ({"top_k": 2.5}, "top_k"),
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"max_new_tokens": -1}, "max_new_tokens"),
])
def test_invalid_settings(tiny, kw, match):
    with pytest.raises(InputError, match=match):
        _settings(**kw)
    with pytest.raises(InputError, match=match):
        generate(tiny("llama"), PROMPT, **{"max_new_tokens": 4, **kw})


LOGITS = torch.tensor([2.0, 1.0, 1.0, 0.0, -1.0])


def _kept(**kw) -> list[int]:
    dist = sampling_distribution(LOGITS, _settings(**kw))
    assert dist.sum().item() == pytest.approx(1.0, abs=1e-6)
    return torch.nonzero(dist > 0).flatten().tolist()


def test_no_cut_keeps_everything_with_softmax_probabilities():
    dist = sampling_distribution(LOGITS, _settings())
    torch.testing.assert_close(dist, LOGITS.softmax(-1))


def test_temperature_scales_logits():
    dist = sampling_distribution(LOGITS, _settings(temperature=0.5))
    torch.testing.assert_close(dist, (LOGITS / 0.5).softmax(-1))


def test_top_k_cuts_exactly():
    assert _kept(top_k=1) == [0]
    assert _kept(top_k=2) == [0, 1, 2]  # tokens tied with the 2nd most likely stay together
    assert _kept(top_k=3) == [0, 1, 2]
    assert _kept(top_k=4) == [0, 1, 2, 3]
    assert _kept(top_k=99) == [0, 1, 2, 3, 4]
    dist = sampling_distribution(LOGITS, _settings(top_k=3))
    torch.testing.assert_close(dist[:3], LOGITS[:3].softmax(-1))


def test_top_p_cuts_exactly():
    probs = LOGITS.softmax(-1)  # 0.5745, 0.2114, 0.2114, 0.0777, 0.0286
    assert _kept(top_p=1.0) == [0, 1, 2, 3, 4]
    assert _kept(top_p=0.1) == [0]
    assert _kept(top_p=float(probs[0]) - 1e-4) == [0]
    assert _kept(top_p=float(probs[0]) + 1e-4) == [0, 1, 2]  # the tie at the edge is kept whole
    assert _kept(top_p=0.95) == [0, 1, 2, 3]
    assert _kept(top_p=0.99) == [0, 1, 2, 3, 4]


def test_top_p_with_binary_fractions():
    logits = torch.tensor([0.5, 0.25, 0.125, 0.125]).log()
    kept = lambda p: torch.nonzero(sampling_distribution(logits, _settings(top_p=p)) > 0).flatten().tolist()  # noqa: E731
    assert kept(0.5) == [0]  # reaching top_p exactly is enough
    assert kept(0.75) == [0, 1]
    assert kept(0.8) == [0, 1, 2, 3]  # 0.875 needs token 2, and token 3 ties with it
    torch.testing.assert_close(sampling_distribution(logits, _settings(top_p=0.75)),
                               torch.tensor([2 / 3, 1 / 3, 0.0, 0.0]))


def test_top_k_then_top_p():
    assert _kept(top_k=2, top_p=0.5) == [0]
    assert _kept(top_k=1, top_p=1.0) == [0]


def test_greedy_is_one_hot():
    for s in (_settings(greedy=True), _settings(temperature=0)):
        torch.testing.assert_close(sampling_distribution(LOGITS, s), torch.tensor([1.0, 0, 0, 0, 0]))


def test_batched_rows_are_cut_independently():
    logits = torch.stack([LOGITS, LOGITS.flip(0)])
    dist = sampling_distribution(logits, _settings(top_k=1))
    assert dist[0].argmax() == 0 and dist[1].argmax() == 4 and (dist > 0).sum() == 2


def test_draw_never_picks_zero_probability_and_matches_frequencies():
    dist = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    picks = torch.stack([_draw(dist, gens) for _ in range(2000)])  # (2000, 2)
    assert set(picks[:, 0].tolist()) == {1, 3}
    assert set(picks[:, 1].tolist()) == {4}
    assert (picks[:, 0] == 1).float().mean().item() == pytest.approx(0.5, abs=0.05)


# ---- generation on tiny models ----------------------------------------------------------------------
def _full_logprobs(model, prompt_ids, gen_ids) -> torch.Tensor:
    ids = torch.tensor([list(prompt_ids) + list(gen_ids)])
    with torch.no_grad():
        return model.hf(input_ids=ids).logits[0].float().log_softmax(-1)  # (pos, vocab)


def test_greedy_is_argmax_of_a_full_forward_at_each_step(any_tiny):
    res = generate(any_tiny, PROMPT, max_new_tokens=6, greedy=True)
    again = generate(any_tiny, PROMPT, max_new_tokens=6, greedy=True)
    assert res.ids == again.ids and len(res.steps) == 6
    lp = _full_logprobs(any_tiny, res.prompt_ids, res.ids)
    start = len(res.prompt_ids) - 1
    for i, step in enumerate(res.steps):
        row = lp[start + i]
        assert step.id == int(row.argmax())
        assert step.rank == 1 and step.sample_prob == 1.0 and step.kept == 1
        assert step.logprob == pytest.approx(row[step.id].item(), abs=1e-4)  # KV cache == full forward
        assert step.entropy == pytest.approx(-(row.exp() * row).sum().item(), abs=1e-4)
    assert n_hooks(any_tiny.hf) == 0


def test_sampled_steps_match_a_full_forward(any_tiny):
    res = generate(any_tiny, PROMPT, max_new_tokens=6, seed=3, temperature=1.3, top_k=50)
    lp = _full_logprobs(any_tiny, res.prompt_ids, res.ids)
    start = len(res.prompt_ids) - 1
    for i, step in enumerate(res.steps):
        row = lp[start + i]
        assert step.logprob == pytest.approx(row[step.id].item(), abs=1e-4)
        assert step.rank == int((row > row[step.id]).sum()) + 1
        assert [a.id for a in step.alternatives] == row.topk(5).indices.tolist()
        scaled = sampling_distribution(row, DecodingSettings(temperature=1.3, top_k=50))
        assert step.sample_prob == pytest.approx(scaled[step.id].item(), abs=1e-4)
        assert step.kept == 50


def test_same_seed_same_output(tiny):
    model = tiny("llama")
    kw = dict(max_new_tokens=8, temperature=0.9, top_p=0.9, seed=11)
    a, b = generate(model, PROMPT, **kw), generate(model, PROMPT, **kw)
    assert a.ids == b.ids and a.text == b.text
    assert [s.prob for s in a.steps] == [s.prob for s in b.steps]
    assert a.to_dict()["steps"] == b.to_dict()["steps"]
    others = {generate(model, PROMPT, **{**kw, "seed": s}).ids for s in range(5)}
    assert len(others) > 1  # the seed matters


def test_seed_is_drawn_and_recorded(tiny):
    model = tiny("llama")
    res = generate(model, PROMPT, max_new_tokens=5)
    seed = res.settings["seed"]
    assert isinstance(seed, int)
    assert generate(model, PROMPT, max_new_tokens=5, seed=seed).ids == res.ids


def test_sample_row_zero_equals_generate(tiny):
    model = tiny("gpt2")
    kw = dict(max_new_tokens=6, temperature=1.0, top_k=20, seed=5)
    many = sample(model, PROMPT, n=4, **kw)
    one = generate(model, PROMPT, **kw)
    assert many.samples[0].ids == one.ids
    assert [s.settings["seed"] for s in many.samples] == [5, 6, 7, 8]
    assert many.samples[2].ids == generate(model, PROMPT, **{**kw, "seed": 7}).ids


def test_alternatives_and_rank_consistent(tiny):
    res = generate(tiny("qwen3"), PROMPT, max_new_tokens=8, seed=2, alternatives=10)
    for step in res.steps:
        probs = [a.prob for a in step.alternatives]
        assert probs == sorted(probs, reverse=True) and len(probs) == 10
        assert [a.rank for a in step.alternatives] == list(range(1, 11))
        if step.rank <= 10:
            assert step.alternatives[step.rank - 1].prob == pytest.approx(step.prob, rel=1e-6)
            assert sum(a.prob > step.prob * (1 + 1e-6) for a in step.alternatives) == step.rank - 1
        else:
            assert all(a.prob >= step.prob for a in step.alternatives)
        assert 0 < step.prob <= 1 and step.logprob == pytest.approx(math.log(step.prob), abs=1e-6)


def test_stream_callback_sees_every_step(tiny):
    seen = []
    res = generate(tiny("llama"), PROMPT, max_new_tokens=5, seed=0, on_step=lambda r, s: seen.append((r, s)))
    assert [s for _, s in seen] == list(res.steps) and {r for r, _ in seen} == {0}


def _force_eos_from(model, step: int):
    """Intervene on the LM head so EOS wins from generation step ``step`` on."""
    calls = {"n": 0}

    def boost(logits):
        calls["n"] += 1
        if calls["n"] > step:
            logits = logits.clone()
            logits[..., EOS] += 1000.0
        return logits

    return intervene({model.hf.get_output_embeddings(): boost})


def test_stops_at_eos(tiny):
    model = tiny("llama")
    with _force_eos_from(model, 3):
        res = generate(model, PROMPT, max_new_tokens=10, seed=1)
    assert n_hooks(model.hf) == 0
    assert res.stop_reason == "eos" and len(res.steps) == 4 and res.steps[-1].id == EOS
    assert "<eos>" not in res.text
    assert res.text == model.tokenizer.decode(list(res.ids[:-1]))


def test_samples_stop_at_eos_independently(tiny):
    model = tiny("llama")
    with _force_eos_from(model, 2):  # every row gets EOS at the third step
        res = sample(model, PROMPT, n=3, max_new_tokens=8, seed=0)
    assert all(s.stop_reason == "eos" and len(s.steps) == 3 for s in res.samples)


def test_stop_strings(tiny):
    model = tiny("llama")
    free = generate(model, PROMPT, max_new_tokens=8, greedy=True)
    stop_token = free.steps[3].token
    assert stop_token.strip(), "pick a visible token"
    res = generate(model, PROMPT, max_new_tokens=8, greedy=True, stop=(stop_token,))
    decode = model.tokenizer.decode
    first = next(i for i in range(len(free.steps)) if stop_token in decode(list(free.ids[: i + 1])))
    assert res.stop_reason == "stop" and len(res.steps) == first + 1


def test_prompt_and_room_must_fit(tiny):
    model = tiny("llama")
    prompt = "The dog " * 55
    n = model.encode(prompt).shape[1]
    assert n < 128
    with pytest.raises(PromptTooLongError, match="to generate"):
        generate(model, prompt, max_new_tokens=128 - n + 1)
    assert len(generate(model, prompt, max_new_tokens=128 - n, greedy=True).steps) == 128 - n


def test_hooks_removed_after_error(tiny):
    model = tiny("llama")

    def fail(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), intervene({model.adapter.blocks[0]: fail}):
        generate(model, PROMPT, max_new_tokens=3, seed=0)
    assert n_hooks(model.hf) == 0
    with pytest.raises(InputError):
        generate(model, "", max_new_tokens=3)
    assert n_hooks(model.hf) == 0


# ---- the divergence tree ----------------------------------------------------------------------------
def _paths(node, prefix=()):
    ids = prefix + tuple(node["ids"])
    yield node, ids
    for child in node["children"]:
        yield from _paths(child, ids)


@pytest.mark.parametrize("seed", [0, 1])
def test_divergence_tree(seed):
    model = tiny_model("gpt_neox")
    res = sample(model, PROMPT, n=6, max_new_tokens=5, temperature=0.7, top_k=3, seed=seed)
    samples = [s.ids for s in res.samples]
    assert len(set(samples)) > 1
    for node, prefix in _paths(res.tree):
        rows = node["samples"]
        children = [r for c in node["children"] for r in c["samples"]]
        assert len(children) == len(set(children)) and set(children) <= set(rows)  # a partition ...
        ended = set(rows) - set(children)
        assert all(len(samples[r]) == len(prefix) for r in ended)  # ... of those that go on
        for r in rows:
            assert samples[r][: len(prefix)] == prefix
        firsts = [c["ids"][0] for c in node["children"]]
        assert len(firsts) == len(set(firsts))  # children differ in their first token
        assert len(node["ids"]) == len(node["tokens"]) == len(node["probs"]) == len(node["sample_probs"])
        assert node["text"] == model.tokenizer.decode(node["ids"])
    leaves = {r: ids for node, ids in _paths(res.tree) for r in node["samples"] if not node["children"]}
    for r, ids in enumerate(samples):  # concatenating node ids along the path gives each sample
        assert leaves[r] == ids
    for point in res.branch_points():  # the samples differ exactly at the branch points
        rows = point["node"]["samples"]
        assert len({samples[r][point["at"]] for r in rows if len(samples[r]) > point["at"]}) > 1
        assert len({samples[r][: point["at"]] for r in rows}) == 1
    # a branch's probability is the model's probability of the draw that started it
    for node, prefix in _paths(res.tree):
        for child in node["children"]:
            r = child["samples"][0]
            assert child["probs"][0] == pytest.approx(res.samples[r].steps[len(prefix)].prob)


def test_identical_samples_make_one_node(tiny):
    res = sample(tiny("llama"), PROMPT, n=3, max_new_tokens=4, top_k=1, seed=0)
    assert res.tree["children"] == [] and len(res.tree["ids"]) == 4 and res.branch_points() == []


def test_sample_count_validated(tiny):
    for n in (0, -1, 1.5):
        with pytest.raises(InputError, match="number of samples"):
            sample(tiny("llama"), PROMPT, n=n)


@pytest.mark.parametrize("alternatives", [0, -2, True])
def test_alternatives_validated(tiny, alternatives):
    with pytest.raises(InputError, match="alternatives"):
        generate(tiny("llama"), PROMPT, max_new_tokens=2, alternatives=alternatives)
