import json

import pytest

import whyllm
from tests.helpers.feedback import PAIRS, fill
from whyllm import feedback as fb
from whyllm.errors import InputError
from whyllm.feedback import formats
from whyllm.model.adapters import weights_hash


def test_add_records_model_ids_and_settings(tiny, db):
    model = tiny("llama")
    g = whyllm.generate(model, "Alice and Bob", max_new_tokens=4, seed=7)
    item = fb.add_feedback(model, generation=g, verdict="bad", reason="odd", db=db, user="ann")
    assert item["model"] == "tiny-llama" and item["weights_hash"] == weights_hash(model)
    assert item["completion_ids"] == list(g.ids) and item["completion"] == g.text
    assert item["settings"]["seed"] == 7 and item["source"] == "api" and item["user"] == "ann"
    assert fb.get_feedback(item["id"], db) == item
    assert [i["id"] for i in fb.list_feedback(db)] == [item["id"]]


@pytest.mark.parametrize("kwargs, match", [
    ({"completion_ids": [5, 6]}, "decode to"),
    ({"completion_ids": [10**6]}, "not a token"),
    ({"correction": "  "}, "correction is empty"),
    ({"correction": " Paris"}, "completion itself"),
    ({"verdict": "meh"}, "verdict"),
])
def test_bad_items_are_refused_and_nothing_stored(tiny, db, kwargs, match):
    model = tiny("llama")
    fill(model, db, PAIRS[:1])
    args = {"verdict": "bad", **kwargs}
    with pytest.raises(InputError, match=match):
        fb.add_feedback(model, "The capital of France is", " Paris", db=db, **args)
    assert len(fb.list_feedback(db)) == 1


def test_generation_of_another_model_is_refused(tiny, db):
    g = whyllm.generate(tiny("gpt2"), "Alice and Bob", max_new_tokens=3, seed=1)
    with pytest.raises(InputError, match="produced by 'tiny-gpt2'"):
        fb.add_feedback(tiny("llama"), generation=g, verdict="bad", db=db)


def test_export_formats(tiny, db, tmp_path):
    model = tiny("llama")
    fill(model, db, PAIRS[:2])
    fb.add_feedback(model, "The capital of Italy is", " Rome", "good", db=db)
    dpo = fb.export_feedback(tmp_path / "d.jsonl", "dpo", db)
    assert dpo[0] == {"prompt": "The capital of France is", "chosen": " Paris", "rejected": " Rome"}
    # a bad completion and a good one of the same prompt also make a pair: here the correction wins
    assert len(dpo) == 2
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == dpo
    kto = fb.export_feedback(None, "kto", db)
    assert sorted((r["completion"], r["label"]) for r in kto) == [
        (" Paris", False), (" Paris", True), (" Rome", False), (" Rome", True), (" Rome", True)]
    sft = fb.export_feedback(None, "sft", db)
    assert [r["completion"] for r in sft] == [" Paris", " Rome", " Rome"]
    with pytest.raises(InputError, match="choose one of"):
        fb.export_feedback(None, "orpo", db)


def test_good_and_bad_of_one_prompt_pair_up():
    items = [{"id": 1, "model": "m", "prompt": "p", "completion": " a", "verdict": "bad"},
             {"id": 2, "model": "m", "prompt": "p", "completion": " b", "verdict": "good"}]
    assert formats.pairs(items) == [{"prompt": "p", "chosen": " b", "rejected": " a", "feedback_ids": [1, 2]}]


def test_chat_items_export_conversational():
    msgs = [{"role": "user", "content": "hi"}]
    items = [{"id": 1, "model": "m", "prompt": "<t>hi", "messages": msgs, "completion": " a",
              "verdict": "bad", "correction": " b"}]
    row = formats.rows(items, "dpo")[0]
    assert row["prompt"] == msgs and row["chosen"] == [{"role": "assistant", "content": " b"}]
    assert formats.rows(items, "dpo", conversational=False)[0]["prompt"] == "<t>hi"


def test_export_import_round_trips(tiny, db, tmp_path):
    model = tiny("llama")
    fill(model, db)
    before = fb.list_feedback(db)
    other = tmp_path / "other.sqlite"
    fb.export_feedback(tmp_path / "all.jsonl", "jsonl", db)
    fb.import_feedback(tmp_path / "all.jsonl", other)
    after = fb.list_feedback(other)
    assert [{k: v for k, v in i.items() if k != "id"} for i in after] == \
        [{k: v for k, v in i.items() if k != "id"} for i in before]
    fb.export_feedback(tmp_path / "dpo.jsonl", "dpo", db)
    ids = fb.import_feedback(tmp_path / "dpo.jsonl", other, model="tiny-llama")
    again = fb.export_feedback(None, "dpo", other)
    assert again[-len(ids):] == fb.export_feedback(None, "dpo", db)


def test_import_is_all_or_none(db, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt": "p", "chosen": " a", "rejected": " b"}\n{"prompt": "p", "chosen": ""'
                    ', "rejected": " b"}\n')
    with pytest.raises(InputError, match="line 2"):
        fb.import_feedback(path, db)
    path.write_text('{"prompt": "p", "chosen": " a", "rejected": " b"}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        fb.import_feedback(path, db)
    path.write_text('{"text": "p"}\n')
    with pytest.raises(InputError, match="no known format"):
        fb.import_feedback(path, db)
    assert fb.list_feedback(db) == []
