import math

import pytest
import torch

from tests.helpers.internals import boom
from whyllm.errors import InputError
from whyllm.methods.components import components
from whyllm.methods.engine.direct import capture_direct, decompose
from whyllm.model.hooks import capture, intervene, n_hooks
from whyllm.model.tiny import tiny_model
from whyllm.results.internals import ComponentsResult

PROMPT = "The capital of France is"
TOL = 1e-4  # float32: parts sum to the logit within 1e-4 * max(1, |largest part|)


def _pre_cap_logits(model, prompt):
    """The real pre-soft-cap logits at the last position, from the model's own modules."""
    ad = model.adapter
    with torch.no_grad():
        with capture({"x": ad.ln_final}, inputs=True) as acts:
            out = model.hf(input_ids=model.encode(prompt)).logits[0, -1].float()
        return ad.unembed(ad.ln_final(acts["x"][0, -1])).float(), out


@pytest.mark.parametrize("foil", [None, " Rome"])
def test_parts_sum_to_the_real_logit(any_tiny, foil):
    r = components(any_tiny, PROMPT, target=" Paris", foil=foil)
    pre, real = _pre_cap_logits(any_tiny, PROMPT)
    t, f = r.target_id, r.foil_id
    want = pre[t] - (pre[f] if f is not None else 0.0)
    scale = max(1.0, max(abs(p.value) for p in r.parts))
    assert abs(r.total - float(want)) <= TOL * scale
    assert abs(sum(p.value for p in r.parts) - r.total) <= TOL * scale
    assert abs(r.error) <= TOL * scale
    assert r.logit == pytest.approx(float(real[t] - (real[f] if f is not None else 0.0)), abs=1e-5)
    names = {p.name for p in r.parts}
    ad = any_tiny.adapter
    assert {"embed", f"L{ad.n_layers - 1}.mlp", f"L0.H{ad.n_heads - 1}"} <= names
    assert ("pos_embed" in names) == (ad.pos_embed is not None)


def test_architecture_specifics_are_covered(tiny):
    assert tiny("llama").adapter.n_kv_heads < tiny("llama").adapter.n_heads  # grouped-query attention
    assert tiny("gpt_neox").adapter.parallel_residual
    assert tiny("gemma3_text").adapter.spec.attn_post_norm and tiny("gemma3_text").adapter.softcap
    gpt2 = {p.name for p in components(tiny("gpt2"), PROMPT).parts}
    assert {"pos_embed", "L0.attn_bias", "ln_final.bias"} <= gpt2


@torch.no_grad()
def test_heads_and_neurons_add_up_to_their_sublayer(any_tiny):
    """Per layer: heads (+ bias) reproduce the attention output's share, neurons (+ bias) the MLP's."""
    ad = any_tiny.adapter
    attn = {f"attn{i}": ad.part(i, "attn_out") for i in range(ad.n_layers)}
    with capture(attn) as o, capture_direct(any_tiny) as direct:
        real = any_tiny.hf(input_ids=any_tiny.encode(PROMPT)).logits[0, -1]
    acts = {**direct.at(-1), **{k: v[0, -1] for k, v in o.items()}}
    target = int(real.argmax())
    dec = decompose(any_tiny, acts, target, None)
    frozen = ad.frozen_norm(ad.ln_final, acts["final"])
    w = ad.unembed.weight[target].float()
    by_name = {p.name: p.value for p in dec.parts}
    for layer in range(ad.n_layers):
        heads = sum(v for k, v in by_name.items() if k.startswith((f"L{layer}.H", f"L{layer}.attn_bias")))
        want = float(frozen(acts[f"attn{layer}"]) @ w)
        assert heads == pytest.approx(want, abs=1e-5)
        bias = ad.out_bias(layer, "mlp_down")
        neurons = float(dec.neuron_values[layer].sum())
        if bias is not None:
            b = bias.float()
            if ad.spec.mlp_post_norm:
                b = ad.frozen_norm(ad.part(layer, "mlp_out"), acts[f"mlp_post{layer}"])(b)
            neurons += float(frozen(b) @ w)
        assert neurons == pytest.approx(by_name[f"L{layer}.mlp"], abs=1e-5)


def test_decomposes_the_pre_soft_cap_logit():
    m = tiny_model("gemma3_text", seed=1)
    m.hf.config.final_logit_softcapping = 0.05  # strong capping: capped and uncapped logits differ
    r = components(m, PROMPT, target=" Paris", foil=" Rome")
    assert r.softcap == 0.05
    pre, real = _pre_cap_logits(m, PROMPT)
    assert r.total == pytest.approx(float(pre[r.target_id] - pre[r.foil_id]), abs=1e-5)
    cap = [0.05 * math.tanh(float(pre[i]) / 0.05) for i in (r.target_id, r.foil_id)]
    assert r.logit == pytest.approx(cap[0] - cap[1], abs=1e-5) and abs(r.logit - r.total) > 1e-3
    assert sum(p.value for p in r.parts) == pytest.approx(r.total, abs=1e-5)


def test_ranking_and_neurons(tiny):
    r = components(tiny("llama"), PROMPT, top_neurons=4)
    heads = r.top("head", 3)
    assert [abs(p.value) for p in heads] == sorted((abs(p.value) for p in heads), reverse=True)
    assert len(r.neurons) == 4 * min(3, r.n_layers)
    assert r.head_values.shape == (r.n_layers, r.n_heads) and r.mlp_values.shape == (r.n_layers,)
    assert components(tiny("llama"), PROMPT, top_neurons=0).neurons == ()


def test_json_round_trip(tiny):
    r = components(tiny("gpt2"), PROMPT, target=" Paris", foil=" Rome")
    doc = r.to_dict()
    assert doc["kind"] == "components" and doc["model"] == "tiny-gpt2"
    assert {"name", "value"} <= set(doc["parts"][0]) and doc["total"] == r.total
    back = ComponentsResult.from_dict(doc)
    assert back.parts == r.parts and back.neurons == r.neurons
    assert list(r.to_dataframe().columns) == ["name", "kind", "layer", "head", "value"]


@pytest.mark.parametrize("kwargs", [{"target": " Paris", "foil": " Paris"}, {"top_neurons": -1},
                                    {"foil": ""}])
def test_bad_arguments(tiny, kwargs):
    with pytest.raises(InputError):
        components(tiny("llama"), PROMPT, **kwargs)


def test_no_hooks_left(tiny):
    m = tiny("gemma3_text")
    components(m, PROMPT)
    assert n_hooks(m.hf) == 0
    with pytest.raises(RuntimeError), intervene({m.adapter.part(1, "mlp"): boom}):
        components(m, PROMPT)
    assert n_hooks(m.hf) == 0
