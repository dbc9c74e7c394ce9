"""Parameter attribution on tiny models of every architecture: exact scores, a check that can fail."""

import io
import json
from unittest import mock

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import whyllm.methods.params as pm
from whyllm.errors import InputError
from whyllm.methods.params import parameter_groups, params
from whyllm.methods.params.check import Variant, measure, metric, scaled, zeroed
from whyllm.model.hooks import n_hooks
from whyllm.model.patches import requires_grad
from whyllm.results.params import ParamsResult

PROMPT, TARGET = "The capital of France is", " Paris"


def _grads(model, tid, fid=None):
    """Reference: full autograd gradient of the metric with respect to every parameter."""
    ids = model.encode(PROMPT)
    ps = list(model.hf.parameters())
    with requires_grad(ps), torch.enable_grad():
        value = metric(model, ids, tid, fid)[0]
        return {id(p): g for p, g in zip(ps, torch.autograd.grad(value, ps, allow_unused=True), strict=True)}


def test_groups_cover_every_parameter_once(any_tiny):
    groups = parameter_groups(any_tiny)
    ids = [id(p) for g in groups for _, p, _ in g.params]
    assert sorted(ids) == sorted(id(p) for p in any_tiny.hf.parameters())
    assert len({g.name for g in groups}) == len(groups)
    assert {g.kind for g in groups} <= {"embed", "unembed", "attn", "mlp", "norm", "other"}
    names = {g.name for g in groups}
    assert "L0.ln1" in names and any(n.startswith("L1.attn.") for n in names)


def test_scores_equal_autograd_gradient_times_weight(any_tiny):
    res = params(any_tiny, PROMPT, target=TARGET, check=False)
    grads = _grads(any_tiny, res.target_id)
    for group, g in zip(parameter_groups(any_tiny), res.groups, strict=True):
        ref = sum(float((grads[id(p)] * p.detach()).sum())
                  for _, p, _ in group.params if grads[id(p)] is not None)
        assert g.score == pytest.approx(ref, rel=1e-3, abs=1e-6), g.name
    for u in res.neurons[:3]:  # a neuron = its down-projection input column
        mod = any_tiny.adapter.part(u.layer, "mlp_down")
        prod = grads[id(mod.weight)] * mod.weight.detach()
        col = prod[u.index] if type(mod).__name__ == "Conv1D" else prod[:, u.index]
        assert u.score == pytest.approx(float(col.sum()), rel=1e-3, abs=1e-6)


def test_check_correlates_on_tiny_models(any_tiny):
    res = params(any_tiny, PROMPT, target=TARGET, top_k=5)
    assert res.checked and res.n_correlated >= 10
    assert res.correlation > 0.99 and res.rank_correlation > 0.9
    assert res.largest_miss["share"] < 0.2
    for u in (*res.rows, *res.neurons, *res.heads):
        assert u.measured_change is not None and u.predicted_change == pytest.approx(-u.score)
    assert res.seconds["attribution"] > 0 and res.seconds["check"] > 0


@pytest.mark.parametrize("arch", ["gpt2", "gemma3_text", "llama"])  # Conv1D, positions; tied, scaled
def test_batched_measure_equals_editing_the_weights(tiny, arch):
    model = tiny(arch)
    ids, tid = model.encode(PROMPT), model.encode_continuation(TARGET)[0]
    groups = parameter_groups(model)
    variants = [Variant([(p, scaled(0.9)) for _, p, _ in g.params]) for g in groups]
    emb = next(g for g in groups if g.kind == "embed")
    variants.append(Variant([(emb.params[0][1], zeroed((tid,)))]))
    res = params(model, PROMPT, target=TARGET, top_k=4, check=False)  # rows, neurons, heads zeroed
    variants += [pm._unit_variant(model, groups, u) for u in (*res.rows, *res.neurons, *res.heads)]
    got = measure(model, ids, tid, None, variants, chunk=5)
    with torch.no_grad():
        base = float(metric(model, ids, tid, None)[0])
        for v, m in zip(variants, got, strict=True):
            saved = [(p, p.clone()) for p, _ in v.edits]
            for p, fn in v.edits:
                p.copy_(fn(p))
            real = float(metric(model, ids, tid, None)[0]) - base
            for p, old in saved:
                p.copy_(old)
            assert m == pytest.approx(real, abs=2e-5)


@pytest.mark.parametrize("arch, invariant", [("llama", False), ("qwen3", True), ("gemma3_text", True)])
def test_scale_invariant_groups_are_flagged(tiny, arch, invariant):
    res = params(tiny(arch), PROMPT, target=TARGET, top_k=3)
    flagged = set(res.scale_invariant)
    if not invariant:
        assert not flagged and not res.notes
        return
    assert {"L0.attn.q", "L0.attn.k"} <= flagged  # q/k norms cancel their scale
    g = next(g for g in res.groups if g.name == "L0.attn.q")
    assert g.relative < pm.INVARIANT_RELATIVE and abs(g.measured_change) < 1e-5 and g.abs_score > 0
    assert "scale-invariant" in res.notes[0]
    assert res.n_correlated == len(res.groups) - len(flagged) - sum(
        1 for x in res.groups if not x.scale_invariant and abs(x.measured_change) <= pm.ABS_FLOOR)


def test_check_cannot_pass_on_trivially_zero_changes(tiny):
    model = tiny("llama")
    with mock.patch.object(pm, "measure", side_effect=lambda m, i, t, f, v, **k: [0.0] * len(v)), \
            pytest.warns(UserWarning, match="correlation is undefined"):
        res = params(model, PROMPT, target=TARGET, top_k=3)
    assert res.correlation is None and res.n_correlated == 0 and res.unit_correlation is None
    assert any("undefined" in n for n in res.notes)


def test_foil_metric_is_the_logit_difference(tiny):
    model = tiny("qwen2")
    res = params(model, PROMPT, target=TARGET, foil=" Rome", check=False)
    with torch.no_grad():
        logits = model.hf(input_ids=model.encode(PROMPT)).logits[0, -1]
    assert res.metric == "logit_diff"
    assert res.value == pytest.approx(float(logits[res.target_id] - logits[res.foil_id]), abs=1e-4)


def test_default_target_is_the_top_prediction(tiny):
    model = tiny("phi3")
    res = params(model, PROMPT, check=False)
    with torch.no_grad():
        top = int(model.hf(input_ids=model.encode(PROMPT)).logits[0, -1].argmax())
    assert res.target_id == top and res.target == res.target_token
    with torch.no_grad():
        value = float(metric(model, model.encode(PROMPT), top, None)[0])
    assert res.value == pytest.approx(value, abs=1e-5)


def test_no_hooks_grads_or_weight_changes_left_behind(tiny):
    model = tiny("gpt2")
    before = {n: p.clone() for n, p in model.hf.named_parameters()}
    flags = {n: p.requires_grad for n, p in model.hf.named_parameters()}
    params(model, PROMPT, target=TARGET, top_k=3)
    with mock.patch.object(pm, "last_logits", side_effect=RuntimeError("boom")), pytest.raises(RuntimeError):
        params(model, PROMPT, target=TARGET)
    with mock.patch("whyllm.methods.params.check.metric", side_effect=RuntimeError("boom")), \
            pytest.raises(RuntimeError):
        params(model, PROMPT, target=TARGET)
    assert n_hooks(model.hf) == 0
    for n, p in model.hf.named_parameters():
        assert torch.equal(p, before[n]) and p.requires_grad == flags[n] and p.grad is None


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 0}, "top_k"), ({"epsilon": 1.5}, "epsilon"), ({"foil": " Paris"}, "same token"),
    ({"target": ""}, "empty"),
])
def test_bad_input(tiny, kwargs, message):
    with pytest.raises(InputError, match=message):
        params(tiny("llama"), PROMPT, **{"target": TARGET, **kwargs})


def test_result_round_trip_views_and_cli(tiny, tmp_path):
    model = tiny("gemma3_text")
    res = params(model, PROMPT, target=TARGET, top_k=4)
    doc = json.loads(res.to_json())
    again = ParamsResult.from_dict(doc)
    assert again.to_dict() == res.to_dict()
    fields = {"name", "score", "predicted_change", "measured_change", "scale_invariant"}
    assert fields <= set(doc["groups"][0])
    assert len(res.to_dataframe()) == len(res.groups)
    console = Console(file=io.StringIO(), width=100)
    console.print(res)
    text = console.file.getvalue()
    assert "parameter attribution of" in text and "scale-invariant" in text and "check:" in text
    assert "Parameter attribution" in res.to_html()
    runner = CliRunner()
    from whyllm.cli import app

    png = tmp_path / "p.png"
    with mock.patch("whyllm.model.load.load_model", return_value=model):
        out = runner.invoke(app, ["params", PROMPT, "--target", TARGET, "--json", "-k", "3",
                                  "--png", str(png)])
    assert out.exit_code == 0, out.output
    cli = json.loads(out.output)
    assert cli["kind"] == "params" and cli["correlation"] > 0.99 and len(cli["rows"]) == 3
    assert png.read_bytes()[:4] == b"\x89PNG"
    with mock.patch("whyllm.model.load.load_model", return_value=model):
        bad = runner.invoke(app, ["params", PROMPT, "--target", TARGET, "--foil", TARGET])
    assert bad.exit_code == 2 and "same token" in bad.output
