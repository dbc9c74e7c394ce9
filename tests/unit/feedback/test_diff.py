import pytest
import torch

import whyllm
from tests.helpers.feedback import PAIRS
from whyllm import feedback as fb
from whyllm.errors import InputError
from whyllm.feedback.diff import diff
from whyllm.feedback.influence import pair_logprob, sequence_logprob, tracin
from whyllm.model.tiny import tiny_model
from whyllm.results.feedback import DiffResult

PROMPTS = ["The capital of France is", "One two three four"]


@pytest.fixture
def result(adapted):
    return diff(adapted, PROMPTS, max_new_tokens=4)


def test_distributions_and_layers_agree(adapted, result):
    d = result.prompts[0]
    with adapted.base():
        base = whyllm.predict(adapted, PROMPTS[0]).logprobs
    tuned = whyllm.predict(adapted, PROMPTS[0]).logprobs
    kl = float((tuned.exp() * (tuned - base)).sum())
    assert d.kl == pytest.approx(kl, rel=1e-4, abs=1e-7) and d.kl > 0
    assert d.layers[-1]["kl"] == pytest.approx(d.kl, rel=1e-3, abs=1e-6)  # last layer is the output
    assert [x["layer"] for x in d.layers] == ["embed", "L0", "L1"]
    assert d.layers[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # embeddings carry no LoRA
    rises = [g["tuned_prob"] - g["base_prob"] for g in d.gained]
    assert rises == sorted(rises, reverse=True) and rises[0] > 0
    assert all(x["tuned_prob"] < x["base_prob"] for x in d.lost)


def test_generations_match_each_model(adapted, result):
    d = result.prompts[0]
    with adapted.base():
        base = whyllm.generate(adapted, PROMPTS[0], max_new_tokens=4, greedy=True, seed=0)
    tuned = whyllm.generate(adapted, PROMPTS[0], max_new_tokens=4, greedy=True, seed=0)
    assert (d.base_text, d.tuned_text) == (base.text, tuned.text)
    first = next((i for i, (a, b) in enumerate(zip(base.ids, tuned.ids, strict=True)) if a != b), None)
    assert (d.first_divergence or {}).get("step") == first


def test_components_lora_and_feedback(adapted, result, tuned):
    d = result.prompts[0]
    assert d.components and all(c["change"] == pytest.approx(c["tuned"] - c["base"]) for c in d.components)
    changes = [abs(c["change"]) for c in d.components]
    assert changes == sorted(changes, reverse=True)
    assert len(result.lora) == 2 * 7 and result.lora[0]["norm"] >= result.lora[-1]["norm"] > 0
    ids = {i["id"] for i in fb.list_feedback(tuned[1])}
    assert {f["id"] for f in d.feedback} == ids
    # the France prompt's change is driven most by the France pair (or the Eiffel one: also " Paris")
    assert d.feedback[0]["prompt"] in (PAIRS[0][0], PAIRS[2][0])


def test_tracin_is_signed_by_the_training_objective(adapted):
    prompt, bad, good = PAIRS[0]
    plus, minus = adapted.encode_continuation(good), adapted.encode_continuation(bad)
    along, against = tracin(adapted, [(prompt, plus, minus), (prompt, minus, plus)])
    assert along[1] > 0 and against[1] == pytest.approx(-along[1], rel=1e-4)
    # TracIn restores the final adapter weights
    again = tracin(adapted, [(prompt, plus, minus)])[0]
    assert again == pytest.approx(along, rel=1e-5)


def test_round_trip_views_and_no_leaks(adapted, result):
    doc = result.to_dict()
    assert DiffResult.from_dict(doc).to_dict() == doc
    assert set(doc["prompts"][0]) >= {"prompt", "kl", "gained", "lost", "first_divergence", "layers",
                                      "components", "feedback"}
    assert "moved" in doc["summary"] and len(result.to_dataframe()) == 2
    assert "KL" in result.to_html()
    for m in adapted.hf.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert not any(p.requires_grad for n, p in adapted.peft.named_parameters() if "lora_" in n)


def test_bad_input(adapted):
    with pytest.raises(InputError, match="adapter"):
        diff(tiny_model("llama"), PROMPTS)
    with pytest.raises(InputError, match="at least one prompt"):
        diff(adapted, [])
    with pytest.raises(InputError, match="empty"):
        diff(adapted, ["  "])


def test_side_effects_are_moved_prompts_unlike_any_feedback(adapted):
    r = diff(adapted, PROMPTS, max_new_tokens=2, feedback=False, layers=False, components=False,
             threshold=0.0)
    assert r.summary["moved"] == PROMPTS
    assert r.summary["side_effects"] == ["One two three four"]
    assert r.prompts[0].feedback == () and r.prompts[0].layers == ()
    torch.testing.assert_close(torch.tensor(r.summary["mean_kl"]),
                               torch.tensor(sum(p.kl for p in r.prompts) / 2))


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_pair_logprob_equals_two_single_passes(tiny, arch):
    model = tiny(arch)
    a, b = model.encode_continuation(" Paris is big"), model.encode_continuation(" Rome")
    with torch.no_grad():
        both = pair_logprob(model, PROMPTS[0], a, b)
        single = torch.stack([sequence_logprob(model, PROMPTS[0], a), sequence_logprob(model, PROMPTS[0], b)])
    torch.testing.assert_close(both, single, atol=1e-4, rtol=1e-4)
