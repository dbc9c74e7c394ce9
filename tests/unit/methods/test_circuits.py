"""Circuits: exact edge ablation, EAP as the first-order change of it, the curve, bad input, documents."""

import json
from xml.etree import ElementTree as ET

import pytest
import torch

from whyllm.errors import InputError, UnknownMethodError, UnsupportedModelError
from whyllm.methods.circuits import circuit
from whyllm.methods.circuits.graph import build_graph
from whyllm.methods.circuits.passes import ablation_pass, writer_outputs
from whyllm.methods.engine.direct import capture_direct
from whyllm.methods.engine.sweep import Metric
from whyllm.model.tiny import tiny_model
from whyllm.results.circuits import CircuitResult

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ARCHS = ["llama", "gemma3_text", "qwen2", "qwen3", "gpt2", "phi3"]


def _runs(model):
    ids, cids = model.encode(CLEAN), model.encode(CORRUPTED)
    with torch.no_grad(), capture_direct(model) as acts:
        logits = model.hf(input_ids=torch.cat([ids, cids]), use_cache=False, logits_to_keep=1).logits[:, -1]
    return ids, writer_outputs(model, acts), logits.float()


@pytest.mark.parametrize("arch", ARCHS)
def test_keeping_every_edge_is_the_clean_run_and_ablating_every_edge_the_corrupted_run(tiny, arch):
    model = tiny(arch)
    graph = build_graph(model)
    ids, writers, logits = _runs(model)
    metric = Metric.for_tokens(5, 7)
    ablate = torch.zeros(len(graph.ends), 2, len(graph.writers), 1)
    ablate[:, 1] = graph.valid[:, :, None].float()
    got = ablation_pass(model, graph, ids, writers[:, 1], ablate, metric)
    want = metric.from_logits(logits)
    assert torch.allclose(got, want, atol=1e-5), (arch, got, want)


def test_the_graph_reads_before_it_writes(tiny):
    model = tiny("gemma3_text")  # grouped-query attention: 4 query heads, 2 key/value heads
    graph = build_graph(model)
    kinds = [n.kind for n in graph.nodes]
    assert kinds.count("head") == 2 * 4 and kinds.count("kv") == 2 * 2 and kinds.count("mlp") == 2
    ends = {(e.layer, e.port, e.head): i for i, e in enumerate(graph.ends)}
    assert len(ends) == 2 * (4 + 2 + 2 + 1) + 1
    same_head = graph.writer_index(0, 1)
    assert graph.valid[ends[(0, "in", None)], same_head]  # the MLP reads its own block's heads
    assert not graph.valid[ends[(0, "q", 1)], same_head]  # a head never reads its own block
    assert graph.valid[ends[(1, "k", 0)], graph.writer_index(0, None)]  # block 1 reads block 0's MLP
    assert graph.valid[-1].all()  # the logits read every writer


def test_fused_interleaved_attention_is_refused_with_a_clear_error(tiny):
    with pytest.raises(UnsupportedModelError, match="queries, keys and values"):
        circuit(tiny("gpt_neox"), CLEAN, corrupted=CORRUPTED)


@pytest.mark.parametrize("arch, rel", [("gpt2", 1e-6), ("llama", 2e-3), ("qwen3", 2e-3)])
def test_an_eap_score_is_the_first_order_change_of_ablating_that_edge(arch, rel):
    """score(e) = -d/dt m(edge e ablated by a fraction t) at t = 0, by central differences in float64.

    GPT-2 is float64 throughout (exact to rounding); Llama-style RMSNorms compute in float32 inside a
    float64 model, so their step is larger and the tolerance looser.
    """
    model = tiny_model(arch, dtype=torch.float64)
    res = circuit(model, CLEAN, corrupted=CORRUPTED, method="eap", sizes=[1], random_samples=0)
    graph = build_graph(model)
    ids, writers, _ = _runs(model)
    metric = Metric.for_tokens(res.target_id, res.foil_id)
    index = {n.id: i for i, n in enumerate(graph.nodes)}
    ends = {(graph.nodes[e.node].id, e.port): i for i, e in enumerate(graph.ends)}
    t = 1e-5 if rel < 1e-4 else 1e-2
    n_pos = ids.shape[1]
    for e in res.edge_rows(8):
        ablate = torch.zeros(len(graph.ends), 2, len(graph.writers), n_pos, dtype=torch.float64)
        source, _, at = e["source"].partition("@")  # the embeddings are one writer per position
        where = slice(None) if not at else int(at)
        end, writer = ends[(e["target"], e["port"])], graph.writers.index(index[source])
        ablate[end, 0, writer, where], ablate[end, 1, writer, where] = t, -t
        plus, minus = ablation_pass(model, graph, ids, writers[:, 1], ablate, metric).tolist()
        assert (minus - plus) / (2 * t) == pytest.approx(e["score"], rel=rel, abs=1e-9), e


def test_eap_ig_with_one_step_is_eap(tiny):
    model = tiny("llama")
    a = circuit(model, CLEAN, corrupted=CORRUPTED, method="eap", sizes=[1], random_samples=0)
    b = circuit(model, CLEAN, corrupted=CORRUPTED, method="eap-ig", steps=1, sizes=[1], random_samples=0)
    assert torch.allclose(a.scores, b.scores)


def test_the_curve_ends_at_the_clean_run_and_sizes_are_honoured(tiny):
    model = tiny("gemma3_text")
    res = circuit(model, CLEAN, corrupted=CORRUPTED, target=" Mary", foil=" John", steps=2, random_samples=2)
    n = len(res.scores)
    assert res.curve_sizes[-1] == n and res.curve[-1] == pytest.approx(1.0, abs=1e-4)
    assert res.random_curve[-1] == pytest.approx(1.0, abs=1e-4) and len(res.curve_sizes) <= 10
    assert (res.scores.abs()[:-1] >= res.scores.abs()[1:]).all()  # strongest first
    chosen = circuit(model, CLEAN, corrupted=CORRUPTED, target=" Mary", foil=" John", steps=2, edges=5,
                     sizes=[1, 3])
    assert chosen.circuit_edges == 5 and chosen.chosen_by == "edges" and sum(
        e["in_circuit"] for e in chosen.edge_rows()) == 5
    share = circuit(model, CLEAN, corrupted=CORRUPTED, steps=2, share=0.5, sizes=[1])
    top = share.scores.abs()
    assert top[: share.circuit_edges].sum() >= 0.5 * top.sum() > top[: share.circuit_edges - 1].sum()


def test_mean_ablation_without_a_corrupted_prompt(tiny):
    res = circuit(tiny("llama"), CLEAN, target=" Mary", steps=2, sizes=[1, 10], random_samples=1)
    assert res.ablation == "mean" and res.corrupted_prompt is None and res.metric == "logit"
    assert res.curve.shape == (2,)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"corrupted": "a b c"}, InputError, "equal token length"),
    ({"corrupted": CORRUPTED, "sizes": [0]}, InputError, "circuit size must be a positive integer"),
    ({"corrupted": CORRUPTED, "sizes": [10**6]}, InputError, "larger than the graph"),
    ({"corrupted": CORRUPTED, "edges": 10**6}, InputError, "larger than the graph"),
    ({"corrupted": CORRUPTED, "edges": 0}, InputError, "positive integer"),
    ({"corrupted": CORRUPTED, "edges": 3, "share": 0.5}, InputError, "not both"),
    ({"corrupted": CORRUPTED, "share": 1.5}, InputError, "share must be"),
    ({"corrupted": CORRUPTED, "method": "acdc"}, UnknownMethodError, "eap-ig"),
    ({"corrupted": CORRUPTED, "steps": 0}, InputError, "steps"),
    ({"corrupted": CLEAN}, InputError, "same metric"),
    ({"target": "", "corrupted": CORRUPTED}, InputError, "target"),
])
def test_bad_input_gets_one_clear_error(tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        circuit(tiny("llama"), CLEAN, **kwargs)


def test_documents_round_trip_and_graphml_reads_back(tiny, tmp_path):
    res = circuit(tiny("llama"), CLEAN, corrupted=CORRUPTED, steps=2, sizes=[1, 5], neurons=2)
    doc = json.loads(res.to_json())
    assert {"nodes", "edges", "curve", "method", "circuit", "neurons"} <= doc.keys()
    assert set(doc["edges"][0]) == {"source", "target", "port", "score", "in_circuit"}
    assert set(doc["curve"][0]) == {"edges", "faithfulness", "random_faithfulness", "random_std"}
    assert CircuitResult.from_dict(doc).to_dict() == res.to_dict()
    frame = res.to_dataframe()
    assert len(frame) == len(res.scores) and frame["in_circuit"].sum() == res.circuit_edges
    root = ET.fromstring(res.to_graphml(tmp_path / "c.graphml").split("?>", 1)[1])
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:node", ns)) == len(res.nodes)
    assert len(root.findall(".//g:edge", ns)) == len(res.scores)
    assert (tmp_path / "c.graphml").exists()


def test_token_embeddings_are_nodes_of_their_own(tiny):
    model = tiny("llama")
    res = circuit(model, CLEAN, corrupted=CORRUPTED, method="eap", sizes=[1, 20])
    n_pos, graph = model.encode(CLEAN).shape[1], build_graph(model)
    assert [n.id for n in res.nodes[:n_pos]] == [f"embed@{p}" for p in range(n_pos)]
    assert len(res.nodes) == n_pos + len(graph.nodes) - 1
    assert len(res.scores) == graph.n_edges + (n_pos - 1) * int(graph.valid[:, 0].sum())
    clean, corrupted = model.encode(CLEAN)[0].tolist(), model.encode(CORRUPTED)[0].tolist()
    differ = [p for p, (a, b) in enumerate(zip(clean, corrupted, strict=True)) if a != b]
    for e in res.edge_rows():  # a token the corrupted prompt does not change carries nothing
        if e["source"].startswith("embed@") and int(e["source"][6:]) not in differ:
            assert e["score"] == 0.0


def test_per_position_nodes_and_edges(tiny):
    model = tiny("llama")
    res = circuit(model, CLEAN, corrupted=CORRUPTED, method="eap", per_position=True, sizes=[1, 20])
    n_pos = model.encode(CLEAN).shape[1]
    assert len(res.nodes) == len(build_graph(model).nodes) * n_pos
    assert len(res.scores) == build_graph(model).n_edges * n_pos
    for e in res.edge_rows(50):
        assert e["source"].split("@")[1] == e["target"].split("@")[1]  # the residual stream is per position


def test_views_say_it_in_words(tiny):
    from whyllm.render import dispatch
    from whyllm.render.html import page

    res = circuit(tiny("llama"), CLEAN, corrupted=CORRUPTED, method="eap", sizes=[1, 3, 9])
    text = str(dispatch.terminal(res).renderables[1])
    assert text.startswith("Keeping the top") and "recovers" in text
    html = page(res)
    assert html.count("type='radio'") == len(set(res.curve_sizes) | {res.circuit_edges})
    assert "<svg class='graph'" in html and "plain EAP is a first-order estimate" in html


def test_heads_carry_their_attention_and_every_layer_its_lens(tiny):
    from whyllm import attention, logit_lens

    model = tiny("gemma3_text")
    res = circuit(model, CLEAN, corrupted=CORRUPTED, steps=2, sizes=[5, 40])
    assert {a.node for a in res.attention} == {n.id for n in res.nodes if n.kind == "head"}
    a = res.attention[0]
    pattern = attention(model, CLEAN, layers=[a.layer], heads=[a.head]).patterns[0, 0, -1]
    assert [k[0] for k in a.keys] == pattern.topk(len(a.keys)).indices.tolist()
    assert a.keys[0][2] == pytest.approx(float(pattern.max()), abs=1e-5)
    assert [x.layer for x in res.lens] == list(range(model.adapter.n_layers))
    lens = logit_lens(model, CLEAN, positions=[-1], top_k=3)
    for x in res.lens:  # the same read-out as the lens analysis (whose first row is the embeddings)
        assert x.top[0][0] == lens.top_tokens[x.layer + 1][-1][0]
    doc = res.to_dict()
    assert doc["attention"][0]["keys"][0]["token"] == a.keys[0][1] and len(doc["lens"]) == len(res.lens)
    assert "attends to" in page_text(res)


def page_text(res):
    from whyllm.render.html import page

    return page(res)


def test_a_circuit_that_reaches_no_80_percent_is_flagged(tiny):
    from whyllm.render.circuits import warnings

    res = circuit(tiny("llama"), CLEAN, corrupted=CORRUPTED, steps=2, sizes=[1, 2])
    assert res.chosen_by == "faithfulness" and res.faithfulness < 0.8  # a random model: no small circuit
    assert any(w.startswith("no measured circuit smaller than the whole graph") for w in warnings(res))
    forced = circuit(tiny("llama"), CLEAN, corrupted=CORRUPTED, steps=2, sizes=[1, 2], edges=2)
    assert not any(w.startswith("no measured circuit") for w in warnings(forced))
