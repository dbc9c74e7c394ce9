import pytest
import torch

from tests.helpers.internals import boom
from whyllm.errors import InputError, UnknownMethodError
from whyllm.methods.tracing import causal_trace, embedding_std, subject_positions
from whyllm.model.hooks import intervene, n_hooks

PROMPT = "The capital of France is"


def test_subject_positions_from_offsets(tiny):
    m = tiny("llama")
    tokens = m.token_texts(m.encode(PROMPT)[0])
    pos = subject_positions(m, PROMPT, "France")
    assert [tokens[p] for p in pos] == [" France"]
    assert subject_positions(m, PROMPT, "capital of") == (2, 3)


@pytest.mark.parametrize("subject, error", [(None, "needs the subject"), ("", "needs the subject"),
                                            ("Paris", "does not occur")])
def test_subject_errors(tiny, subject, error):
    with pytest.raises(InputError, match=error):
        causal_trace(tiny("llama"), PROMPT, subject=subject)


def _reference(model, samples, seed, scale, layer, pos, target_id):
    """Probability of the target with noise on ' France' and the clean resid_pre restored at (layer, pos)."""
    ad = model.adapter
    ids = model.encode(PROMPT)
    subj = list(subject_positions(model, PROMPT, "France"))
    with torch.no_grad():
        clean = {}

        def keep(t):
            clean["x"] = t.clone()
            return t

        with intervene({ad.blocks[layer]: keep}, inputs=True):
            model.hf(input_ids=ids)
        x = ad.embed(ids).repeat(samples, 1, 1)
        noise = torch.randn(samples, len(subj), x.shape[-1], generator=torch.Generator().manual_seed(seed))
        x[:, subj] += scale * noise

        def restore(t):
            t = t.clone()
            t[:, pos] = clean["x"][:, pos]
            return t

        with intervene({ad.blocks[layer]: restore}, inputs=True):
            probs = model.hf(inputs_embeds=x).logits[:, -1].float().softmax(-1)[:, target_id]
    return float(probs.mean())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_restoring_states_matches_a_direct_reference(tiny, arch):
    m = tiny(arch)
    r = causal_trace(m, PROMPT, subject="France", samples=3, seed=1)
    assert r.method == "causal_trace" and r.metric == "prob" and r.corrupted_prompt is None
    scale = r.meta["params"]["noise"]
    assert scale == pytest.approx(3 * embedding_std(m))
    for layer in range(m.adapter.n_layers):
        for pos in (4, 5):
            want = _reference(m, 3, 1, scale, layer, pos, r.target_id)
            assert float(r.values[layer, pos]) == pytest.approx(want, abs=1e-6)
    # before the subject nothing was noised: restoring there changes nothing
    assert float(r.grid[:, :4].abs().max()) == 0.0
    # restoring the embeddings of the (one-token) subject removes all the noise
    assert float(r.values[0, 4]) == pytest.approx(r.clean, abs=1e-6)


def test_seed_and_components(tiny):
    m = tiny("qwen3")
    a = causal_trace(m, PROMPT, subject="France", samples=2, seed=5, component="mlp_out")
    b = causal_trace(m, PROMPT, subject="France", samples=2, seed=5, component="mlp_out")
    torch.testing.assert_close(a.grid, b.grid)
    with pytest.raises(UnknownMethodError, match="resid_pre"):
        causal_trace(m, PROMPT, subject="France", component="head")
    with pytest.raises(InputError, match="samples"):
        causal_trace(m, PROMPT, subject="France", samples=0)


def test_no_hooks_left(tiny):
    m = tiny("phi3")
    causal_trace(m, PROMPT, subject="France", samples=2, component="attn_out")
    assert n_hooks(m.hf) == 0
    with pytest.raises(RuntimeError), intervene({m.adapter.part(1, "mlp"): boom}):
        causal_trace(m, PROMPT, subject="France", samples=2)
    assert n_hooks(m.hf) == 0
