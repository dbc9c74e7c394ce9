"""Batch on the real default model: packed predict equals whyllm.predict on the bundled prompt set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import whyllm
from whyllm.batch import read_input, read_table
from whyllm.batch.report import summarise

DATA = Path(whyllm.batch.__file__).parent / "data" / "prompts.jsonl"


def test_bundled_prompts_packed_predict_matches_one_at_a_time(gemma, tmp_path):
    rows = read_input(DATA)
    picked = rows[:12] + rows[250:262]  # both kinds, several lengths
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({k: r[k] for k in ("id", "prompt", "target")}) + "\n" for r in picked))
    summary = whyllm.batch(src, ["predict"], tmp_path / "out", model=gemma)
    assert summary.done == 24 and summary.errors == 0
    table = read_table(tmp_path / "out").set_index("id")
    for r in picked:
        ref = whyllm.predict(gemma, r["prompt"], target=r["target"])
        got = json.loads(table.loc[r["id"], "result"])
        assert got["top"][0]["id"] == ref.top[0].id
        assert got["target"]["logprobs"] == pytest.approx(list(ref.target.logprobs), abs=2e-3)
        assert got["target"]["ranks"] == list(ref.target.ranks)
    s = summarise(tmp_path / "out")
    assert s["accuracy"]["rows"] == 24
    assert s["accuracy"]["accuracy"] > 0.3  # Gemma 3 270M knows capitals and resolves most IOI prompts
