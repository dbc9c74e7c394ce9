"""Circuits on the real default model: known mechanisms are found and the circuits are faithful."""

import collections

import pytest

from whyllm import circuit, patch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to")
FACT = ("The Eiffel Tower is located in the city of", "The Colosseum is located in the city of")


def test_ioi_circuit_holds_the_heads_patching_ranks_highest_and_beats_random_circuits(gemma):
    res = circuit(gemma, IOI[0], corrupted=IOI[1], target=" Mary", foil=" John")
    heads = {n.id for n in res.circuit_nodes() if n.kind == "head"}
    grid = patch(gemma, IOI[0], IOI[1], target=" Mary", foil=" John", component="head").grid
    order = grid.flatten().abs().argsort(descending=True).tolist()
    top = [f"L{i // grid.shape[1]}.H{i % grid.shape[1]}" for i in order[:5]]
    assert set(top[:3]) <= heads and len(set(top) & heads) >= 4, (top, sorted(heads))
    assert res.faithfulness >= 0.8 and res.circuit_edges <= 100, (res.circuit_edges, res.faithfulness)
    inside = [i for i, s in enumerate(res.curve_sizes) if res.circuit_edges <= s < len(res.scores)]
    margins = [float(res.curve[i] - res.random_curve[i]) for i in inside]
    curve = list(zip(res.curve_sizes, res.curve.tolist(), res.random_curve.tolist(), strict=True))
    assert min(margins) >= 0.5, curve


def test_factual_recall_runs_through_mlps_at_the_subject(gemma):
    res = circuit(gemma, FACT[0], corrupted=FACT[1], target=" Paris", per_position=True)
    tokens = res.tokens
    subject = {i for i, t in enumerate(tokens) if t in (" Eiffel", " Tower")}
    assert len(subject) == 2
    mass: collections.Counter = collections.Counter()
    for e in res.edge_rows():
        for end in (e["source"], e["target"]):
            if ".mlp@" in end:
                layer, pos = int(end[1:].split(".")[0]), int(end.split("@")[1])
                mass[pos, layer] += abs(e["score"])
    at_subject = sum(v for (p, _), v in mass.items() if p in subject)
    elsewhere = sum(v for (p, _), v in mass.items() if p not in subject and p != len(tokens) - 1)
    assert at_subject > 2 * elsewhere, (at_subject, elsewhere)
    early_mid = sum(v for (p, layer), v in mass.items() if p in subject and layer <= 8)
    assert early_mid > 0.5 * at_subject  # where causal tracing restores the answer (layers 0-8)
    assert res.faithfulness >= 0.8
    i = res.curve_sizes.index(res.circuit_edges)
    assert res.random_curve[i] < 0.2
