"""Attribution on the real default model (Gemma 3 270M): sanity of what it finds, and IG completeness."""

import pytest
import torch

from whyllm.methods.attribution import explain, explain_step
from whyllm.methods.attribution.baselines import baseline_embeddings
from whyllm.methods.attribution.inputs import prepare
from whyllm.methods.generate import generate
from whyllm.model.hooks import n_hooks

IOI = "When Mary and John went to the store, John gave a drink to"
NAMES = {" Mary", " John"}


def test_occlusion_finds_the_names(gemma):
    """The issue's check, strict: the top occlusion unit for " Mary" is a name (default replacement)."""
    r = explain(gemma, IOI, target=" Mary", method="occlusion")
    assert r.baseline == "mean" and r.faithfulness.replacement == "mean"
    assert r.ranked()[0].text == " Mary"
    assert r.faithfulness.comprehensiveness > 0 and r.faithfulness.deletion_auc < 0
    assert n_hooks(gemma.hf) == 0


def test_contrast_mary_vs_john_is_about_the_names(gemma):
    r = explain(gemma, IOI, target=" Mary", foil=" John", method="occlusion")
    assert r.score > 0  # the model prefers Mary
    names = sum(abs(u.score) for u in r.units if u.text in NAMES)
    others = [abs(u.score) for u in r.units if u.text not in NAMES]
    # the names together outweigh every other unit; " Mary" and the final " to" (the read position,
    # whose replacement changes what is being predicted) are the two strongest single units
    assert names > max(others) and names > 0.4 * (names + sum(others))
    assert " Mary" in [u.text for u in r.ranked()[:2]]


def _ioi_variants() -> list[tuple[str, str, str]]:
    pairs = [("Mary", "John"), ("Alice", "Bob"), ("Sarah", "Tom"), ("Anna", "Peter"), ("Lisa", "David"),
             ("Emma", "James")]
    out = []
    for a, b in pairs:
        out.append((f"When {a} and {b} went to the store, {b} gave a drink to", " " + a, " " + b))
        out.append((f"When {b} and {a} went to the park, {b} gave a ball to", " " + a, " " + b))
    return out


def test_occlusion_names_across_ioi_variants(gemma):
    """Not one lucky prompt: 12 IOI variants (names, order, place), occlusion with the default replacement."""
    top, dominate = 0, 0
    for prompt, io, s in _ioi_variants():
        r = explain(gemma, prompt, target=io, method="occlusion", faithfulness=False)
        top += r.ranked()[0].text == io
        c = explain(gemma, prompt, target=io, foil=s, method="occlusion", faithfulness=False)
        names = sum(abs(u.score) for u in c.units if u.text in (io, s))
        dominate += names > max(abs(u.score) for u in c.units if u.text not in (io, s))
    assert top == 12 and dominate == 12


def test_integrated_gradients_completeness_under_one_percent(gemma):
    """Default baseline (pad embedding), 32 Gauss-Legendre steps: completeness error < 1%."""
    r = explain(gemma, IOI, target=" Mary", steps=32, faithfulness=False)
    assert r.baseline == "<pad>" and r.steps == 32
    assert r.completeness_error < 0.01
    prep = prepare(gemma, IOI)
    with torch.no_grad():
        x = gemma.adapter.embed(prep.ids)
        base, _ = baseline_embeddings(gemma, prep, x, "default")
        lp = gemma.hf(inputs_embeds=torch.cat([x, base])).logits[:, -1].float().log_softmax(-1)
    mary = gemma.encode_continuation(" Mary")[0]
    gap = float(lp[0, mary] - lp[1, mary])  # f(input) - f(baseline), computed independently
    assert float(r.token_scores.sum()) == pytest.approx(gap, rel=0.01)
    assert r.ranked()[0].text in NAMES


def test_zero_baseline_does_not_converge(gemma):
    """The reason for the default: an all-zero baseline breaks IG on RMSNorm models."""
    with pytest.warns(UserWarning, match="completeness"):
        r = explain(gemma, IOI, target=" Mary", steps=32, baseline="zero", faithfulness=False)
    assert r.completeness_error > 0.05


def test_explain_a_sampled_step(gemma):
    gen = generate(gemma, "The capital of France is", max_new_tokens=3, temperature=0.7, top_p=0.9, seed=0)
    r = explain_step(gemma, gen, 0, method="occlusion")
    assert r.step["id"] == gen.steps[0].id and r.step["kept"] >= 1
    assert r.step["sample_prob"] == pytest.approx(gen.steps[0].sample_prob, rel=1e-3)
    assert r.target_kind == "contrast" and r.foil_ids == (r.step["runner_up"]["id"],)
    assert all(p.grad is None for p in gemma.hf.parameters()) and n_hooks(gemma.hf) == 0


def test_per_token_matrix(gemma):
    r = explain(gemma, IOI, target=" Mary.", per_token=True, method="occlusion", faithfulness=False)
    assert r.matrix.shape[0] == len(r.target_ids) and torch.isfinite(r.matrix).all()


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_factual_recall_points_at_the_subject(gemma, method):
    """" Paris" after "The Eiffel Tower is located in the city of": the subject leads."""
    r = explain(gemma, "The Eiffel Tower is located in the city of", target=" Paris", method=method,
                faithfulness=False)
    assert r.ranked()[0].text == " Eiffel"
