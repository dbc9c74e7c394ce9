import random

import pytest
import torch

import whyllm
from whyllm.errors import InputError
from whyllm.model.hooks import n_hooks
from whyllm.results.training import EmergeResult
from whyllm.training import emerge as emerge_module
from whyllm.training.emerge import detect_phase_changes, emerge, head_scores, zeroed_heads
from whyllm.training.train import evaluate_batch


@pytest.fixture(scope="module")
def result(tiny_run):
    out, _ = tiny_run
    return emerge(out)


def test_json_contract(result):
    doc = result.to_dict()
    assert [c["step"] for c in doc["checkpoints"]] == [0, 3, 6]
    for c in doc["checkpoints"]:
        assert {"step", "loss", "in_context_loss", "target_prob", "heads"} <= set(c)
        assert len(c["heads"]) == 8
        assert {"layer", "head", "induction_score", "previous_token_score"} <= set(c["heads"][0])
        assert len(c["lens"]) == 3 and c["lens"][-1] == pytest.approx(c["target_prob"], abs=1e-5)
    assert isinstance(doc["phase_changes"], list)
    assert EmergeResult.from_dict(doc).to_dict() == doc
    assert len(result.to_dataframe()) == 3 * 8


def test_target_prob_matches_predict(result, tiny_run):
    out, _ = tiny_run
    model = whyllm.load_model(out / "checkpoint-6", progress=False)
    p = whyllm.predict(model, result.prompt, target=result.target).target.prob
    assert result.checkpoints[-1]["target_prob"] == pytest.approx(p, rel=1e-4)
    comp = whyllm.components(model, result.prompt, target=result.target)
    assert result.checkpoints[-1]["components"] == pytest.approx({p.name: p.value for p in comp.parts})


def test_default_prompt_is_cut_before_a_repeat(result):
    words = result.prompt.split()
    assert result.target.strip() in words  # induction: the target appeared earlier


def test_head_scores_match_the_definition(tiny_run):
    out, _ = tiny_run
    model = whyllm.load_model(out / "checkpoint-6", progress=False)
    ind, prev = head_scores(model, seed=5, length=10, n=4)
    rng = random.Random(5)
    rows = []
    for _ in range(4):
        block = [rng.randrange(4, model.adapter.d_vocab) for _ in range(10)]
        rows.append([1, *block, *block])
    model.hf.set_attn_implementation("eager")
    att = model.hf(input_ids=torch.tensor(rows), output_attentions=True).attentions
    for layer in range(2):
        a = att[layer]  # (batch, head, q, k)
        want_ind = torch.stack([a[:, :, q, q - 9] for q in range(11, 21)], -1).mean((0, 2))
        want_prev = torch.stack([a[:, :, q, q - 1] for q in range(1, 21)], -1).mean((0, 2))
        assert ind[layer] == pytest.approx(want_ind.tolist(), abs=1e-5)
        assert prev[layer] == pytest.approx(want_prev.tolist(), abs=1e-5)


def test_zeroing_a_head_equals_zeroing_its_output_weights(tiny_run):
    out, _ = tiny_run
    model = whyllm.load_model(out / "checkpoint-6", progress=False)
    ids = torch.tensor([[1, *range(4, 30), *range(4, 30)]])
    hooked = zeroed_heads(model, [(1, 2), (0, 1)], ids)
    assert n_hooks(model.hf) == 0
    d_head = model.adapter.d_head
    with torch.no_grad():
        for layer, head in [(1, 2), (0, 1)]:
            model.adapter.part(layer, "attn_o").weight[:, head * d_head:(head + 1) * d_head] = 0
    assert hooked == pytest.approx(evaluate_batch(model.hf, ids), abs=1e-5)


def test_no_hooks_left_after_an_error(tiny_run, monkeypatch):
    out, _ = tiny_run
    model = whyllm.load_model(out / "checkpoint-6", progress=False)

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(emerge_module, "evaluate_batch", boom)
    with pytest.raises(RuntimeError, match="boom"):
        zeroed_heads(model, [(0, 0)], torch.tensor([[1, 5, 6, 7]]))
    assert n_hooks(model.hf) == 0


def test_phase_change_detection():
    steps = list(range(0, 550, 50))
    values = [4.2, 4.1, 4.0, 3.95, 3.9, 3.8, 1.0, 0.4, 0.3, 0.28, 0.27]
    flat = [[0.05, 0.05], [0.05, 0.05]]
    ind = [flat] * 6 + [[[0.05, 0.05], [0.05, 0.6]]] * 5
    prev = [flat] * 5 + [[[0.5, 0.05], [0.05, 0.05]]] * 6
    (p,) = detect_phase_changes(steps, values, ind, prev)
    assert p["step"] == 300 and p["from_step"] == 250 and p["to_step"] <= 350
    assert p["heads"][0] == {"layer": 1, "head": 1, "role": "induction", "rise": pytest.approx(0.55)}
    assert {(h["layer"], h["head"], h["role"]) for h in p["heads"]} == {(1, 1, "induction"),
                                                                          (0, 0, "previous_token")}
    wiggle = [4.2, 4.15, 4.18, 4.12, 4.1, 4.11, 4.08, 4.05, 4.06, 4.02, 4.0]
    assert detect_phase_changes(steps, wiggle, [flat] * 11, [flat] * 11) == []


def test_bad_inputs(tiny_run, tmp_path):
    out, _ = tiny_run
    with pytest.raises(InputError, match="no checkpoints"):
        emerge(tmp_path)
    with pytest.raises(InputError, match="does not know"):
        emerge(out, prompt="hello world", target=" w01")
    with pytest.raises(InputError, match="give --prompt"):
        emerge(out, target=" w01")
    with pytest.raises(InputError, match="no checkpoint for step"):
        emerge(out, steps=[5])


def test_the_fall_after_initialisation_is_no_phase_change():
    steps = [0, 50, 100, 150, 200]
    values = [7.6, 6.0, 5.1, 4.7, 4.5]  # fastest at the start, then slower and slower
    flat = [[0.05]]
    assert detect_phase_changes(steps, values, [flat] * 5, [flat] * 5) == []
