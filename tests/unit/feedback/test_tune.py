import json

import pytest
import torch

from tests.helpers.feedback import PAIRS, fill
from whyllm import feedback as fb
from whyllm.errors import InputError
from whyllm.feedback.influence import sequence_logprob
from whyllm.feedback.tune import tune
from whyllm.model.tiny import tiny_model
from whyllm.results.feedback import TuneResult


def _lp(model, prompt, text):
    with torch.no_grad():
        return float(sequence_logprob(model, prompt, model.encode_continuation(text)))


def test_dpo_raises_chosen_and_lowers_rejected(adapted):
    for prompt, bad, good in PAIRS:
        tuned_margin = _lp(adapted, prompt, good) - _lp(adapted, prompt, bad)
        with adapted.base():
            base_margin = _lp(adapted, prompt, good) - _lp(adapted, prompt, bad)
            base_good, base_bad = _lp(adapted, prompt, good), _lp(adapted, prompt, bad)
        assert tuned_margin > base_margin + 0.05, prompt
    # on the first pair (the one repeated in no other) the chosen rises and the rejected falls
    prompt, bad, good = PAIRS[3]
    with adapted.base():
        base_good, base_bad = _lp(adapted, prompt, good), _lp(adapted, prompt, bad)
    assert _lp(adapted, prompt, good) > base_good and _lp(adapted, prompt, bad) < base_bad


def test_record_checkpoints_and_result(tuned):
    folder, db, result = tuned
    record = json.loads((folder / "whyllm-tune.json").read_text())
    ids = [i["id"] for i in fb.list_feedback(db)]
    assert record["feedback_ids"] == ids and result.feedback_ids == tuple(ids)
    assert record["complete"] and record["method"] == "dpo" and record["settings"]["rank"] == 8
    assert [c["step"] for c in record["checkpoints"]] == [4, 8]
    for c in record["checkpoints"]:
        assert (folder / c["path"] / "adapter_model.safetensors").is_file()
        assert not list((folder / c["path"]).glob("optimizer*"))  # adapter only
    assert (folder / "adapter_model.safetensors").is_file() and result.steps == 8
    assert [s for s, _ in result.losses] == list(range(1, 9))
    assert TuneResult.from_dict(result.to_dict()).to_dict() == result.to_dict()


def test_tune_leaves_the_model_as_it_was(db, tmp_path):
    model = tiny_model("llama")
    fill(model, db, PAIRS[:2])
    ids = model.encode("The capital of France is")
    with torch.no_grad():
        before = model.hf(input_ids=ids).logits
    tune(model, db, out=tmp_path / "a", steps=2, learning_rate=1e-2, progress=False)
    with torch.no_grad():
        assert torch.equal(model.hf(input_ids=ids).logits, before)
    assert not any("lora" in n for n, _ in model.hf.named_parameters()) and not model.hf.training


def test_resume_continues_to_the_step_count(db, tmp_path):
    model = tiny_model("llama")
    fill(model, db, PAIRS[:2])
    first = tune(model, db, out=tmp_path / "a", steps=2, checkpoint_every=2, progress=False)
    again = tune(model, db, out=tmp_path / "a", steps=4, checkpoint_every=2, progress=False)
    assert first.steps == 2 and again.steps == 4
    assert [c["step"] for c in again.checkpoints] == [2, 4]
    fb.add_feedback(model, "The capital of Japan is", " Rome", "bad", correction=" Tokyo", db=db)
    with pytest.raises(InputError, match="other feedback"):
        tune(model, db, out=tmp_path / "a", steps=5, progress=False)


def test_kto_on_verdicts_and_sft_on_corrections(db, tmp_path):
    model = tiny_model("llama")
    fb.add_feedback(model, "The capital of France is", " Paris", "good", db=db)
    fb.add_feedback(model, "The capital of France is", " Rome", "bad", db=db)
    fb.add_feedback(model, "The capital of Italy is", " Paris", "bad", db=db)
    k = tune(model, db, out=tmp_path / "k", steps=2, progress=False, method="kto")
    assert k.method == "kto" and k.n_rows == 3
    s = tune(model, db, out=tmp_path / "s", steps=2, progress=False, method="sft")
    assert s.method == "sft" and s.feedback_ids == (1,)


def test_no_usable_feedback_is_a_clear_error(db, tmp_path):
    model = tiny_model("llama")
    with pytest.raises(InputError, match="no usable feedback"):
        tune(model, db, out=tmp_path / "a", steps=2, progress=False)
    fb.add_feedback(model, "The capital of France is", " Paris", "good", db=db)
    with pytest.raises(InputError, match="no usable feedback for kto"):  # KTO needs good and bad
        tune(model, db, out=tmp_path / "a", steps=2, progress=False)
    other = tiny_model("llama", seed=1)  # same name, other weights: its items are not this model's
    with pytest.raises(InputError, match="0 of 1 stored"):
        tune(other, db, out=tmp_path / "a", steps=2, progress=False, method="sft")
    assert not (tmp_path / "a").exists()
    with pytest.raises(InputError, match="steps"):
        tune(model, db, out=tmp_path / "a", steps=0)
