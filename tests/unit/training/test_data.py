import json

import pandas as pd
import pytest

from whyllm.errors import InputError, UnknownMethodError
from whyllm.training.data import BOS, EOS, MAX_BLOCK, MIN_BLOCK, PAD, make_dataset, read_texts


def test_induction_examples_repeat_a_random_block():
    ds = make_dataset("induction", n_examples=50, seed=3)
    lengths = set()
    for ids in ds.examples:
        assert len(ids) == 65 and ids[0] == BOS and PAD not in ids
        body = ids[1:]
        period = next(p for p in range(MIN_BLOCK, MAX_BLOCK + 1) if body[p:] == body[:-p])
        lengths.add(period)
    assert len(lengths) > 10  # random repeat lengths: no position shortcut


def test_same_seed_same_data_and_held_out_is_separate():
    a, b = make_dataset("induction", n_examples=20, seed=1), make_dataset("induction", n_examples=20, seed=1)
    assert a.examples == b.examples and a.eval_examples == b.eval_examples
    assert not set(map(tuple, a.examples)) & set(map(tuple, a.eval_examples))
    assert make_dataset("induction", n_examples=20, seed=2).examples != a.examples


def test_copy_and_recall_are_consistent():
    copy = make_dataset("copy", n_examples=20)
    for ids in copy.examples:
        end = ids.index(EOS)
        sep = (end + 1) // 2 - 1 + 1  # <bos> block = block <eos>
        assert ids[1:sep] == ids[sep + 1:end] and all(i == PAD for i in ids[end + 1:])
    recall = make_dataset("recall", n_examples=20)
    for ids in recall.examples:
        pairs = dict(zip(ids[1:17:2], ids[2:17:2], strict=True))
        assert ids[-1] == EOS and pairs[ids[-3]] == ids[-2]


@pytest.mark.parametrize("task", ["induction", "copy", "recall"])
def test_text_field_tokenizes_back(task):
    ds = make_dataset(task, n_examples=5)
    for ids in ds.examples:
        text = ds.text(ids[1:])
        assert ds.tokenizer(text)["input_ids"] == [i for i in ids if i != PAD]


def test_text_files_of_every_format(tmp_path):
    words = " ".join(f"word{i % 40} and more text" for i in range(400))
    (tmp_path / "a.txt").write_text(words)
    lines = [json.dumps({"text": words}), json.dumps({"text": "tail"})]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    pd.DataFrame({"text": [words, "x"]}).to_parquet(tmp_path / "c.parquet")
    assert len(read_texts(tmp_path)) == 5
    ds = make_dataset("text", data=str(tmp_path), seq_len=32, vocab_size=300)
    assert all(len(e) == 32 and e[0] == BOS for e in ds.examples + ds.eval_examples)
    assert ds.info["documents"] == 5 and len(ds.tokenizer) <= 300


def test_bundled_corpus_has_text():
    ds = make_dataset("text", seq_len=64, vocab_size=512, n_examples=100)
    assert len(ds.examples) == 100 and ds.info["corpus"] == "python-docs" and ds.info["tokens"] > 50_000


def test_bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(InputError, match="has no text"):
        make_dataset("text", data=str(tmp_path / "empty.txt"))
    with pytest.raises(InputError, match="does not exist"):
        make_dataset("text", data=str(tmp_path / "missing.txt"))
    (tmp_path / "bad.jsonl").write_text('{"content": "x"}\n')
    with pytest.raises(InputError, match="no string field 'text'"):
        read_texts(tmp_path / "bad.jsonl")
    with pytest.raises(UnknownMethodError, match="induction"):
        make_dataset("sorting")
    with pytest.raises(InputError, match="--data applies only"):
        make_dataset("induction", data="x.txt")
    with pytest.raises(InputError, match="too short"):
        make_dataset("induction", seq_len=20)


def test_model_corpus_samples_seeded_texts(tiny):
    from whyllm.training.data import _OPENERS, model_corpus

    model = tiny("gemma3_text")
    side = model.tokenizer.padding_side
    a = model_corpus(3, new_tokens=5, seed=1, model=model)
    assert len(a) == 3 and all(t.startswith(o) for t, o in zip(a, _OPENERS, strict=False))
    assert a == model_corpus(3, new_tokens=5, seed=1, model=model)
    assert model.tokenizer.padding_side == side  # restored
    with pytest.raises(InputError, match="default-model:N"):
        make_dataset("text", data="default-model:many")
