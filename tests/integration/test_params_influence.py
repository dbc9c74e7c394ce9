"""Parameter attribution on Gemma 3 270M; training-data attribution on a real key-value recall run."""

import pytest

from whyllm.methods.params import params
from whyllm.training import load_examples, train
from whyllm.training.influence import influence


def test_params_on_gemma_is_honest_about_scale_invariance(gemma):
    res = params(gemma, "The capital of France is", target=" Paris", top_k=5)
    n = gemma.adapter.n_layers
    flagged = set(res.scale_invariant)
    # q/k norms and the post-attention norm cancel any rescaling of q, k, v and o in every layer
    for part in ("attn.q", "attn.k", "attn.v", "attn.o"):
        assert {f"L{i}.{part}" for i in range(n)} <= flagged
    assert not any(g.kind == "norm" and g.scale_invariant for g in res.groups)
    assert "scale-invariant" in res.notes[0]
    # the check correlates only over groups that really moved the metric, never the ~0 ones
    assert res.n_correlated >= 50 and not flagged & {g.name for g in res.groups
                                                    if abs(g.measured_change) > 1e-3}
    assert res.correlation > 0.99 and res.rank_correlation > 0.95
    # inside the invariant groups the attribution moves to units, checked by exact removal
    neurons = [u for u in res.neurons if u.measured_change is not None]
    assert len(neurons) == 5 and all(u.group.endswith("mlp.down") for u in neurons)
    agree = sum((u.predicted_change > 0) == (u.measured_change > 0) for u in neurons)
    assert agree >= 4 and res.unit_correlation > 0.5


@pytest.fixture(scope="module")
def recall_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recall") / "run"
    train("recall", out=out, n_examples=128, steps=200, checkpoint_every=40, batch_size=32, lr=1e-3, seed=0)
    return out


def test_influence_verify_separates_top_k_from_random(recall_run):
    text = load_examples(recall_run)[0]["text"]  # "k12 v25 ... ? k08 v18 <eos>"
    prompt, target = text.rsplit(" ", 2)[0], " " + text.split()[-2]
    res = influence(recall_run, prompt, target, top_k=5, verify=True, k=5, seeds=(0, 1, 2))
    assert res.examples[0].index == 0  # the memorised example itself raised its answer most
    v = res.verify
    assert v["separated"] and v["top_k_drop"] > 1.0
    assert v["top_k_drop"] > 10 * max(abs(d) for d in v["random_drops"])
