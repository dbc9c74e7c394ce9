"""Real training runs (about a minute in all on one CPU thread): an induction head forms and is found.

Known behaviour (Olsson et al. 2022, "In-context learning and induction heads"): a 2-layer
attention-only transformer trained on repeated random sequences forms a previous-token head in
layer 0 and an induction head in layer 1 at a sharp drop of the in-context loss.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

import whyllm
from whyllm.training import checkpoints, train
from whyllm.training.emerge import emerge


@pytest.fixture(scope="module")
def induction_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("induction") / "run"
    res = train("induction", out=out, preset="attn-only-2l-1h", steps=400, checkpoint_every=50, seed=0)
    return out, res, emerge(out)


def test_in_context_loss_collapses(induction_run):
    _, res, em = induction_run
    first, last = res.evals[0], res.evals[-1]
    assert first["in_context_loss"] > 3.5 and last["in_context_loss"] < 0.5
    assert last["in_context_accuracy"] > 0.9
    assert em.checkpoints[0]["target_prob"] < 0.1 and em.checkpoints[-1]["target_prob"] > 0.5


def test_phase_change_is_detected_with_the_heads_that_formed(induction_run):
    _, _, em = induction_run
    assert len(em.phase_changes) == 1
    (phase,) = em.phase_changes
    assert 100 <= phase["step"] <= 400 and phase["before"] - phase["after"] > 1.5
    roles = {(h["layer"], h["head"]): h["role"] for h in phase["heads"]}
    assert roles == {(1, 0): "induction", (0, 0): "previous_token"}
    assert em.induction_head == (1, 0)
    assert em.checkpoints[0]["induction"][1][0] < 0.1 < 0.5 < em.checkpoints[-1]["induction"][1][0]
    assert em.checkpoints[-1]["previous_token"][0][0] > 0.3


def test_zeroing_the_named_induction_head_destroys_in_context_accuracy(induction_run):
    _, _, em = induction_run
    layer, head = em.induction_head
    intact = em.checkpoints[-1]["in_context_accuracy"]
    zeroed = next(a for a in em.ablation if (a["layer"], a["head"]) == (layer, head))
    assert intact > 0.9 and zeroed["in_context_accuracy"] < 0.3
    assert zeroed["in_context_loss"] > 2.0


def test_checkpoints_load_in_other_commands(induction_run):
    out, _, em = induction_run
    model = whyllm.load_model(out / "checkpoint-400", progress=False)
    assert whyllm.predict(model, em.prompt, target=em.target).target.prob > 0.5


def test_text_training_lowers_held_out_loss(tmp_path):
    res = train("text", out=tmp_path / "text", preset="tiny", steps=60, checkpoint_every=30, batch_size=16,
                seq_len=64, vocab_size=512)
    assert res.evals[-1]["loss"] < res.evals[0]["loss"] - 1.0
    assert res.flops == pytest.approx(6 * res.n_params * 60 * 16 * 64)


def test_redundant_induction_heads_are_found_together(tmp_path):
    out = tmp_path / "multi"
    train("induction", out=out, preset="attn-only-2l", steps=500, checkpoint_every=50, seed=0)
    em = emerge(out)
    assert len(em.phase_changes) >= 1
    phase = max(em.phase_changes, key=lambda p: p["before"] - p["after"])
    induction = {(h["layer"], h["head"]) for h in phase["heads"] if h["role"] == "induction"}
    assert induction and all(layer == 1 for layer, _ in induction)
    assert em.induction_head in induction
    group = next(g for g in em.group_ablation if g["step"] == phase["step"] and g["role"] == "induction")
    assert em.checkpoints[-1]["in_context_accuracy"] > 0.9 and group["in_context_accuracy"] < 0.3


def test_a_kill_never_leaves_a_half_checkpoint(tmp_path):
    out = tmp_path / "killed"
    settings = {"preset": "attn-only-2l-1h", "checkpoint_every": 1, "batch_size": 8, "n_examples": 64}
    cmd = [sys.executable, "-c", "from whyllm.cli import app; app()", "train", "--preset", "attn-only-2l-1h",
           "--steps", "2000", "--checkpoint-every", "1", "--batch-size", "8", "--examples", "64",
           "--out", str(out), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint-20").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.013)  # land somewhere inside the next checkpoint writes
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    found = checkpoints(out)
    assert len(found) >= 21
    for _, path in found[-3:]:
        whyllm.load_model(path, progress=False)  # every listed checkpoint is whole
    last = found[-1][0]
    res = train("induction", out=out, steps=last + 3, **settings)
    assert res.resumed_from == last and res.completed_steps == last + 3
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
