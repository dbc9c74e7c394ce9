"""Gradient methods against Captum (same model, target, baseline, quadrature and steps)."""

import dataclasses
import warnings

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, LayerIntegratedGradients, Saliency

from tests.helpers.attribution import PROMPT, reference_logprob
from whyllm.errors import InputError
from whyllm.methods.attribution import explain
from whyllm.methods.attribution.integrated import gauss_legendre
from whyllm.model.tiny import TINY_ARCHITECTURES

# float32 throughout: ours and Captum's run the same computation in a different batch layout
RTOL, ATOL = 1e-4, 1e-6


def _captum_ig(model, x, base, tid, steps):
    ig = IntegratedGradients(lambda e: reference_logprob(model, e, tid))
    return ig.attribute(x, baselines=base, n_steps=steps, method="gausslegendre").sum(-1)[0]


def test_gauss_legendre_integrates_polynomials_exactly():
    a, w = gauss_legendre(5)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float((w * a.double() ** 9).sum()) == pytest.approx(1 / 10, abs=1e-6)  # degree 2n - 1


@pytest.mark.parametrize("steps", [8, 32])
def test_integrated_gradients_matches_captum(setup, steps):
    model, _, x, base, mary = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few steps may warn about completeness: not what this tests
        r = explain(model, PROMPT, target=" Mary", steps=steps, faithfulness=False)
    torch.testing.assert_close(r.token_scores, _captum_ig(model, x, base, mary, steps), rtol=RTOL, atol=ATOL)
    assert r.steps == steps and r.baseline == "<unk>"


def test_layer_integrated_gradients_on_the_embedding_agrees(setup):
    model, prep, _, _, mary = setup
    baseline_ids = prep.ids.clone()
    baseline_ids[0, 1:] = model.tokenizer.unk_token_id  # BOS kept, as whyllm does
    def f(ids):
        return model.hf(input_ids=ids).logits[:, -1].float().log_softmax(-1)[:, mary]

    lig = LayerIntegratedGradients(f, model.adapter.embed)
    want = lig.attribute(prep.ids, baselines=baseline_ids, n_steps=32, method="gausslegendre").sum(-1)[0]
    r = explain(model, PROMPT, target=" Mary", baseline="unk", faithfulness=False)
    torch.testing.assert_close(r.token_scores, want.detach(), rtol=RTOL, atol=ATOL)


def test_input_x_gradient_and_saliency_match_captum(setup):
    model, _, x, _, mary = setup

    def f(e):
        return reference_logprob(model, e, mary)

    ixg = InputXGradient(f).attribute(x.clone().requires_grad_(True)).sum(-1)[0].detach()
    sal = Saliency(f).attribute(x.clone().requires_grad_(True), abs=False)[0].detach().norm(dim=-1)
    r = explain(model, PROMPT, target=" Mary", method="input_x_gradient", faithfulness=False)
    s = explain(model, PROMPT, target=" Mary", method="saliency", faithfulness=False)
    torch.testing.assert_close(r.token_scores[1:], ixg[1:], rtol=RTOL, atol=ATOL)  # BOS is not attributed
    torch.testing.assert_close(s.token_scores[1:], sal[1:], rtol=RTOL, atol=ATOL)
    assert float(r.token_scores[0]) == 0 and float(s.token_scores[0]) == 0


def test_completeness_and_auto_steps(llama):
    r = explain(llama, PROMPT, target=" Mary", steps="auto", faithfulness=False)
    assert r.completeness_error < 0.01
    # f(baseline): every unit replaced by IG's baseline token (unk here)
    gap = r.score - explain(llama, PROMPT, target=" Mary", method="occlusion",
                            baseline="unk").faithfulness.empty_score
    assert float(r.token_scores.sum()) == pytest.approx(gap, rel=0.01)
    assert r.steps >= 16 and r.to_dict()["steps"] == r.steps


def test_zero_baseline_warns_when_completeness_fails(tiny):
    with pytest.warns(UserWarning, match="completeness error"):
        r = explain(tiny("gemma3_text"), PROMPT, target=" Mary", baseline="zero", steps=8, faithfulness=False)
    assert r.completeness_error > 0.05


def test_chunking_does_not_change_results(llama):
    whole = explain(llama, PROMPT, target=" Mary", steps=16, faithfulness=False)
    chunked = explain(llama, PROMPT, target=" Mary", steps=16, faithfulness=False, max_memory=1)  # 1 row each
    torch.testing.assert_close(chunked.token_scores, whole.token_scores, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["integrated_gradients", "input_x_gradient", "saliency"])
def test_per_token_matrix_rows_are_single_attributions(llama, method):
    cont = " Mary and John"
    r = explain(llama, PROMPT, target=cont, per_token=True, method=method, steps=8, faithfulness=False)
    ids = llama.encode_continuation(cont)
    assert r.matrix.shape == (len(ids), len(r.input_ids)) and len(r.matrix_tokens) == len(ids)
    for j in range(len(ids)):
        prefix = PROMPT + llama.tokenizer.decode(ids[:j])
        single = explain(llama, prefix, target=llama.tokenizer.decode([ids[j]]), method=method, steps=8,
                         faithfulness=False)
        n = len(single.input_ids)
        torch.testing.assert_close(r.matrix[j, :n], single.token_scores, rtol=1e-3, atol=1e-5)
        assert float(r.matrix[j, n:].abs().sum()) == 0  # causal: later tokens cannot matter


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_per_token_cut_at_the_readout_equals_backward_from_the_scores(tiny, monkeypatch, arch):
    """The per-token matrix cuts the graph at the unembedding; the plain batched backward agrees."""
    from whyllm.methods.attribution import gradients
    from whyllm.methods.attribution.targets import per_token_target

    model = tiny(arch)
    cont = " Mary and John"
    cut = explain(model, PROMPT, target=cont, per_token=True, method="input_x_gradient", faithfulness=False)
    monkeypatch.setattr(gradients, "_read_owner", lambda target, length: None)
    plain = explain(model, PROMPT, target=cont, per_token=True, method="input_x_gradient", faithfulness=False)
    torch.testing.assert_close(cut.matrix, plain.matrix, rtol=1e-4, atol=1e-6)
    monkeypatch.undo()
    target = per_token_target([5, 6, 7], "x")
    assert gradients._read_owner(target, 10).tolist() == [[0, 1, 2]]
    shared = dataclasses.replace(target, read_group=torch.tensor([0, 0, 1]),
                                 read_off=torch.tensor([-2, -1, -1]))
    assert gradients._read_owner(shared, 10) is None


def test_parameters_untouched(llama):
    flags = [p.requires_grad for p in llama.hf.parameters()]
    explain(llama, PROMPT, target=" Mary", steps=4, faithfulness=False)
    assert [p.requires_grad for p in llama.hf.parameters()] == flags
    assert all(p.grad is None for p in llama.hf.parameters())


@pytest.mark.parametrize("steps", [0, -1, 2.5, "many", True])
def test_bad_steps(llama, steps):
    with pytest.raises(InputError, match="steps"):
        explain(llama, PROMPT, steps=steps)


def test_auto_steps_converge_where_uniform_steps_do_not(tiny):
    """Adaptive panels reach 1% even from the zero baseline that breaks uniform quadrature."""
    model = tiny("gemma3_text")
    with pytest.warns(UserWarning, match="completeness"):
        fixed = explain(model, PROMPT, target=" Mary", baseline="zero", steps=64, faithfulness=False)
    auto = explain(model, PROMPT, target=" Mary", baseline="zero", steps="auto", faithfulness=False)
    assert fixed.completeness_error > 0.05 and auto.completeness_error < 0.01
    assert auto.steps == 8 * auto.extras["panels"] and auto.extras["gradient_evaluations"] <= 512


def test_per_token_matrix_on_every_architecture(any_tiny):
    """The batched backward (or its fallback) works everywhere and matches the loop of single rows."""
    r = explain(any_tiny, PROMPT, target=" Mary and", per_token=True, method="input_x_gradient",
                faithfulness=False)
    ids = any_tiny.encode_continuation(" Mary and")
    decode = any_tiny.tokenizer.decode
    last = explain(any_tiny, PROMPT + decode(ids[:-1]), target=decode(ids[-1:]), method="input_x_gradient",
                   faithfulness=False)
    torch.testing.assert_close(r.matrix[-1], last.token_scores, rtol=1e-3, atol=1e-5)
