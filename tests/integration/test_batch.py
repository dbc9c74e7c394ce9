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


def test_bundled_prompts_packed_occlusion_matches_one_at_a_time(gemma, tmp_path):
    rows = read_input(DATA)
    picked = [rows[0], rows[60], {**rows[1], "prompt": ""}, rows[250], rows[400]]  # an error row inside
    src = tmp_path / "in.jsonl"
    keys = ("id", "prompt", "target", "foil")
    src.write_text("".join(json.dumps({k: r[k] for k in keys}) + "\n" for r in picked))
    summary = whyllm.batch(src, ["explain:occlusion"], tmp_path / "out", model=gemma)
    assert summary.done == 5 and summary.errors == 1
    table = read_table(tmp_path / "out").set_index("id")
    for r in picked:
        if not r["prompt"]:
            assert "empty" in table.loc[r["id"], "error"]
            continue
        ref = whyllm.explain(gemma, r["prompt"], target=r["target"], foil=r["foil"], method="occlusion")
        got = json.loads(table.loc[r["id"], "result"])
        assert [u["score"] for u in got["units"]] == pytest.approx([u.score for u in ref.units], abs=2e-3)
        assert got["faithfulness"]["deletion_curve"]["score"] == pytest.approx(
            list(ref.faithfulness.deletion_scores), abs=2e-3
        )
