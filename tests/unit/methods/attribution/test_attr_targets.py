import pytest
import torch

from tests.helpers.attribution import reference_logprob
from whyllm.errors import InputError, PromptTooLongError
from whyllm.methods.attribution.targets import continuation_target, per_token_target


def _lp_sequence(model, ids: list[int], cont: list[int]) -> float:
    full = torch.tensor([ids + cont])
    with torch.no_grad():
        lp = model.hf(input_ids=full).logits[0].float().log_softmax(-1)
    return float(sum(lp[len(ids) - 1 + j, t] for j, t in enumerate(cont)))


def test_single_token_matches_reference(setup):
    model, prep, x, base, mary = setup
    t = continuation_target(model, prep.n, [mary], " Mary")
    with torch.no_grad():
        got = t.scores(model, torch.cat([x, base]))[:, 0]
        want = reference_logprob(model, torch.cat([x, base]), mary)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert t.kind == "token" and t.rows == 1


def test_multi_token_continuation_and_contrast(setup):
    model, prep, x, _, mary = setup
    ids = prep.ids[0].tolist()
    cont = model.encode_continuation(" Mary and John")
    foil = model.encode_continuation(" John")
    assert len(cont) > 1
    t = continuation_target(model, prep.n, cont, " Mary and John", foil_ids=foil, foil=" John")
    assert t.kind == "contrast" and t.rows == 2
    with torch.no_grad():
        got = float(t.scores(model, x)[0, 0])
    want = _lp_sequence(model, ids, cont) - _lp_sequence(model, ids, foil)
    assert got == pytest.approx(want, abs=1e-4)


def test_per_token_reads_every_output(setup):
    model, prep, x, _, _ = setup
    ids = prep.ids[0].tolist()
    cont = model.encode_continuation(" Mary and John")
    t = per_token_target(cont, " Mary and John")
    full = torch.tensor([ids + cont[:-1]])
    with torch.no_grad():
        got = t.scores(model, model.adapter.embed(full))[0]
    want = [_lp_sequence(model, ids + cont[:j], [cont[j]]) for j in range(len(cont))]
    torch.testing.assert_close(got, torch.tensor(want), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        total = float(t.summed().scores(model, model.adapter.embed(full))[0, 0])
    assert total == pytest.approx(sum(want), abs=1e-4)


def test_temperature_and_kept_tokens(setup):
    model, prep, x, _, mary = setup
    keep = torch.zeros(model.adapter.d_vocab, dtype=torch.bool)
    keep[[mary, 5, 7]] = True
    t = continuation_target(model, prep.n, [mary], " Mary", kind="sampled", temperature=0.7, keep=keep)
    with torch.no_grad():
        logits = model.hf(inputs_embeds=x).logits[0, -1].float() / 0.7
        want = logits[mary] - torch.logsumexp(logits[[mary, 5, 7]], 0)
        assert float(t.scores(model, x)[0, 0]) == pytest.approx(float(want), abs=1e-5)


def test_scores_with_a_shared_prefix_cache(setup):
    model, prep, x, _, mary = setup
    t = continuation_target(model, prep.n, model.encode_continuation(" Mary and"), " Mary and")
    with torch.no_grad():
        whole = t.scores(model, x.expand(3, -1, -1))
        cache = model.hf(inputs_embeds=x[:, :5], use_cache=True).cache
        cache.batch_repeat_interleave(3)
        split = t.scores(model, x[:, 5:].expand(3, -1, -1), cache=cache)
    torch.testing.assert_close(split, whole, rtol=1e-4, atol=1e-4)


def test_target_equal_to_foil_and_too_long(setup):
    model, prep, *_ = setup
    with pytest.raises(InputError, match="same tokens"):
        continuation_target(model, prep.n, [5], "x", foil_ids=[5], foil="x")
    with pytest.raises(PromptTooLongError):
        continuation_target(model, model.adapter.n_ctx, [5, 6], "xy")
