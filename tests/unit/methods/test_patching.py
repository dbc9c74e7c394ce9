import pytest
import torch

from tests.helpers.internals import (
    CLEAN,
    CORRUPTED,
    LONG_CLEAN,
    LONG_CORRUPTED,
    activations,
    boom,
    logit_diff,
    naive_patch,
    site_modules,
)
from whyllm.errors import InputError, UnknownMethodError
from whyllm.methods.patching import COMPONENTS, attribution_patch, compare_patching, patch, spearman
from whyllm.model.hooks import intervene, n_hooks
from whyllm.results.internals import PatchResult

IOI = {"target": " Mary", "foil": " John"}


def _ids(model, *prompts):
    return [model.encode(p) for p in prompts]


@pytest.mark.parametrize("component", COMPONENTS)
def test_batched_sweep_equals_one_patch_at_a_time(tiny, component):
    m = tiny("llama")
    r = patch(m, CLEAN, CORRUPTED, component=component, **IOI)
    clean, corr = _ids(m, CLEAN, CORRUPTED)
    for layer in range(m.adapter.n_layers):
        for j in range(r.grid.shape[1]):
            head = j if component == "head" else None
            where = slice(None) if component == "head" else j
            want = naive_patch(m, clean, corr, component, layer, where, r.target_id, r.foil_id, head)
            assert float(r.values[layer, j]) == pytest.approx(want, abs=1e-5)
    assert r.clean == pytest.approx(logit_diff(m, clean, r.target_id, r.foil_id), abs=1e-5)
    assert r.corrupted == pytest.approx(logit_diff(m, corr, r.target_id, r.foil_id), abs=1e-5)
    torch.testing.assert_close(r.grid, (r.values - r.corrupted) / (r.clean - r.corrupted))


@pytest.mark.parametrize("component", ["resid_pre", "attn_out", "head"])
def test_batched_sweep_every_architecture(any_tiny, component):
    """Spot-check the last layer and last positions/heads against the reference on each architecture."""
    long = any_tiny.name == "tiny-gemma3_text"  # past its sliding window: real masks in the restarted blocks
    clean_text, corr_text = (LONG_CLEAN, LONG_CORRUPTED) if long else (CLEAN, CORRUPTED)
    r = patch(any_tiny, clean_text, corr_text, component=component, layers=[1], positions=[-1, -3, -5],
              per_position=component == "head", **({"target": " said", "foil": " to"} if long else IOI))
    clean, corr = _ids(any_tiny, clean_text, corr_text)
    if component == "head":
        assert r.axes == ("layer", "head", "pos")
        for h in (0, any_tiny.adapter.n_heads - 1):
            want = naive_patch(any_tiny, clean, corr, component, 1, r.positions[0], r.target_id, r.foil_id, h)
            assert float(r.values[0, h, 0]) == pytest.approx(want, abs=1e-5)
        return
    for j, p in enumerate(r.positions):
        want = naive_patch(any_tiny, clean, corr, component, 1, p, r.target_id, r.foil_id)
        assert float(r.values[0, j]) == pytest.approx(want, abs=1e-5)


def test_sanity_identities(tiny):
    m = tiny("gpt2")
    clean, corr = _ids(m, CLEAN, CORRUPTED)
    differ = [i for i in range(clean.shape[1]) if clean[0, i] != corr[0, i]]
    assert len(differ) == 1
    pre = patch(m, CLEAN, CORRUPTED, **IOI)
    # Layer 0's input at the one differing token makes the whole input clean: everything recovered.
    assert float(pre.values[0, differ[0]]) == pytest.approx(pre.clean, abs=1e-6)
    # Anywhere before that token, clean and corrupted activations are equal: patching changes nothing.
    assert float(pre.grid[:, : differ[0]].abs().max()) == 0.0
    post = patch(m, CLEAN, CORRUPTED, component="resid_post", layers=[-1], positions=[-1], **IOI)
    assert float(post.values[0, 0]) == pytest.approx(post.clean, abs=1e-6)


def test_small_passes_give_the_same_grid(tiny):
    m = tiny("qwen2")
    calls = []
    big = patch(m, CLEAN, CORRUPTED, component="mlp_out", **IOI)
    small = patch(m, CLEAN, CORRUPTED, component="mlp_out", max_tokens=1,
                  progress=lambda d, t: calls.append((d, t)), **IOI)
    torch.testing.assert_close(big.values, small.values, atol=1e-5, rtol=0)
    assert len(calls) > 1 and calls[-1][0] == calls[-1][1]


def test_default_target_and_foil_are_the_top_tokens(tiny):
    m = tiny("llama")
    r = patch(m, CLEAN, CORRUPTED)
    clean, corr = _ids(m, CLEAN, CORRUPTED)
    with torch.no_grad():
        top = [int(m.hf(input_ids=x).logits[0, -1].argmax()) for x in (clean, corr)]
    assert r.target_id == top[0]
    assert r.foil_id == (top[1] if top[1] != top[0] else None)
    assert r.metric == ("logit_diff" if r.foil_id is not None else "logit")


def _first_order(model, component, layer, j, target_id, foil_id, per_head):
    """d metric / d alpha at 0 for corrupted + alpha * (clean - corrupted) at one site, by autograd."""
    clean, corr = _ids(model, CLEAN, CORRUPTED)
    mods, inputs = site_modules(model, component)
    a_clean = activations(model, clean, component)[str(layer)]
    a_corr = activations(model, corr, component)[str(layer)]
    alpha = torch.zeros((), requires_grad=True)
    delta = torch.zeros_like(a_clean)
    if per_head:
        h = a_clean.shape[-1] // model.adapter.n_heads
        delta[..., j * h : (j + 1) * h] = (a_clean - a_corr)[..., j * h : (j + 1) * h]
    else:
        delta[:, j] = (a_clean - a_corr)[:, j]
    with intervene({mods[str(layer)]: lambda t: t + alpha * delta}, inputs=inputs):
        logits = model.hf(input_ids=corr).logits[0, -1]
    metric = logits[target_id] - logits[foil_id]
    return float(torch.autograd.grad(metric, alpha)[0])


@pytest.mark.parametrize("component", COMPONENTS)
def test_attribution_patching_is_the_first_order_estimate(tiny, component):
    m = tiny("gemma3_text")
    r = attribution_patch(m, CLEAN, CORRUPTED, component=component, **IOI)
    assert r.values is None and r.method == "attribution"
    span = r.clean - r.corrupted
    cols = [0, 1, 2, 3] if component == "head" else [0, 10, 11, 14]
    for layer in range(m.adapter.n_layers):
        for j in cols:
            want = _first_order(m, component, layer, j, r.target_id, r.foil_id, component == "head")
            assert float(r.grid[layer, j]) * span == pytest.approx(want, abs=1e-5)


def test_attribution_matches_real_patching_in_the_linear_limit(tiny):
    """Patching the final residual stream's last position is linear up to the final norm: AtP ~ exact."""
    m = tiny("llama")
    kw = {"component": "resid_post", "layers": [-1], "positions": [-1], **IOI}
    atp, exact = attribution_patch(m, CLEAN, CORRUPTED, **kw), patch(m, CLEAN, CORRUPTED, **kw)
    assert float(atp.grid[0, 0]) == pytest.approx(float(exact.grid[0, 0]), rel=0.2)


def test_compare_reports_rank_agreement(tiny):
    m = tiny("llama")
    r = compare_patching(m, CLEAN, CORRUPTED, component="head", **IOI)
    exact = patch(m, CLEAN, CORRUPTED, component="head", **IOI)
    torch.testing.assert_close(r.reference, exact.grid)
    assert r.spearman == pytest.approx(spearman(r.grid, exact.grid))
    assert -1.0 <= r.spearman <= 1.0


def test_spearman():
    a = torch.tensor([0.1, 0.5, 0.3, 0.9])
    assert spearman(a, a * 10 + 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(0.8660254)
    assert spearman(torch.ones(3), a[:3]) == 0.0


def test_json_round_trip(tiny):
    r = patch(tiny("llama"), CLEAN, CORRUPTED, component="head", per_position=True, positions=[-1, -2], **IOI)
    doc = r.to_dict()
    assert doc["kind"] == "patch" and doc["component"] == "head" and doc["model"] == "tiny-llama"
    assert {"grid", "clean", "corrupted"} <= set(doc) and len(doc["grid"]) == 2
    back = PatchResult.from_dict(doc)
    torch.testing.assert_close(back.grid, r.grid, atol=1e-6, rtol=0)
    assert back.axes == r.axes and back.positions == r.positions
    df = r.to_dataframe()
    assert len(df) == r.grid.numel() and {"layer", "head", "pos", "recovered", "values"} <= set(df)


def test_unequal_lengths_say_where(tiny):
    with pytest.raises(InputError, match=r"15 tokens.*17.*differ at token 10 .* John.* Alice"):
        patch(tiny("llama"), CLEAN, CLEAN.replace("John gave", "Alice and Bob gave"))


@pytest.mark.parametrize("kwargs, error", [
    ({"layers": [2]}, "layer 2 is out of range"),
    ({"heads": [4], "component": "head"}, "head 4 is out of range"),
    ({"positions": [15]}, "position 15 is out of range"),
    ({"target": " Mary", "foil": " Mary"}, "same token"),
])
def test_bad_arguments(tiny, kwargs, error):
    with pytest.raises(InputError, match=error):
        patch(tiny("llama"), CLEAN, CORRUPTED, **kwargs)


def test_unknown_names_list_the_valid_ones(tiny):
    with pytest.raises(UnknownMethodError, match="resid_pre"):
        patch(tiny("llama"), CLEAN, CORRUPTED, component="resid_mid")
    with pytest.raises(UnknownMethodError, match="attribution"):
        patch(tiny("llama"), CLEAN, CORRUPTED, method="gradient")


def test_nothing_to_recover(tiny):
    with pytest.raises(InputError, match="nothing to recover"):
        patch(tiny("llama"), CLEAN, CLEAN, **IOI)


@pytest.mark.parametrize("method", ["activation", "attribution"])
def test_no_hooks_left(tiny, method):
    m = tiny("gpt_neox")
    patch(m, CLEAN, CORRUPTED, component="head", method=method, **IOI)
    assert n_hooks(m.hf) == 0
    with pytest.raises(RuntimeError), intervene({m.adapter.part(1, "mlp"): boom}):
        patch(m, CLEAN, CORRUPTED, component="attn_out", method=method, **IOI)
    assert n_hooks(m.hf) == 0
