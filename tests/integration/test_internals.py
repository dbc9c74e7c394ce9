"""Internals on the real default model (Gemma 3 270M): figures documented in docs/internals.md."""

import pytest
import torch

from whyllm.methods.components import components
from whyllm.methods.lens import logit_lens
from whyllm.methods.patching import compare_patching, patch
from whyllm.methods.tracing import causal_trace

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
IOI = {"target": " Mary", "foil": " John"}
S2, END = 10, 14  # the second " John" (" Mary" when corrupted) and the last position


def test_lens_ends_at_the_models_output_and_finds_paris(gemma):
    r = logit_lens(gemma, "The capital of France is", target=" Paris")
    with torch.no_grad():
        real = gemma.hf(input_ids=gemma.encode("The capital of France is")).logits[0].float().softmax(-1)
    torch.testing.assert_close(r.top_probs[-1], real.topk(5).values, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(r.target_probs[-1], real[:, r.target_id], atol=1e-6, rtol=1e-4)
    paris = r.target_probs[:, -1]
    assert float(paris[:12].max()) < 0.01  # invisible through layer 10 ...
    assert int(r.target_ranks[13, -1]) == 1 and float(paris[13]) > 0.5  # ... top after layer 12


def test_direct_logit_attribution_of_ioi(gemma):
    r = components(gemma, CLEAN, **IOI)
    assert r.total == pytest.approx(5.22, abs=0.01) and r.logit == pytest.approx(r.total, abs=1e-4)
    assert abs(r.error) < 1e-3
    assert [p.name for p in r.top("head", 2)] == ["L11.H3", "L12.H1"]  # the name-mover-like heads


def test_ioi_residual_patching(gemma):
    r = patch(gemma, CLEAN, CORRUPTED, **IOI)
    assert r.clean == pytest.approx(5.22, abs=0.01) and r.corrupted == pytest.approx(-3.61, abs=0.01)
    g = r.grid
    assert float(g[:, :S2].abs().max()) == 0.0  # same tokens before S2: nothing to patch
    assert float(g[:11, S2].min()) > 0.95  # early layers: everything is still at S2 ...
    assert float(g[16:, END].min()) > 0.95  # ... late layers: it has moved to the last position
    assert float(g[:11, END].abs().max()) < 0.05 and float(g[17, S2].abs().max()) < 0.05
    others = g[:, [c for c in range(g.shape[1]) if c not in (S2, END)]]
    assert float(others.abs().max()) < 0.2


def test_ioi_heads_and_attribution_patching_agree(gemma):
    r = compare_patching(gemma, CLEAN, CORRUPTED, component="head", **IOI)
    exact = r.reference
    assert r.spearman > 0.85  # measured 0.944 over all 72 heads
    top = exact.flatten().abs().argsort(descending=True)
    names = [f"L{i // 4}.H{i % 4}" for i in top[:3].tolist()]
    assert names == ["L15.H1", "L11.H3", "L17.H2"]
    assert float(exact[:9].abs().max()) < 0.1  # heads that matter are all in layers 9 and up
    atp_top = set(r.grid.flatten().abs().argsort(descending=True)[:6].tolist())
    assert set(top[:3].tolist()) <= atp_top


def test_causal_tracing_finds_the_subject(gemma):
    r = causal_trace(gemma, "The capital of France is", target=" Paris", subject="France", samples=5)
    assert r.meta["params"]["subject_positions"] == [4]
    g = r.grid
    assert r.clean == pytest.approx(0.084, abs=0.002) and r.corrupted < 0.01
    assert float(g[:8, 4].min()) > 0.6  # the subject token carries the fact through layer 7 ...
    assert float(g[14:, 4].max()) < 0.05  # ... and no longer at the end
    assert float(g[:12, 5].max()) < 0.1 and float(g[13:, 5].min()) > 0.9  # the last token takes over at 13
