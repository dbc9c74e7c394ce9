"""``whyllm report``: the numbers of the summary and the self-contained HTML page."""

from __future__ import annotations

import json

import pytest

from whyllm.batch import batch
from whyllm.batch.report import bootstrap_ci, summarise, write_report


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_data():
    mean, lo, hi = bootstrap_ci([0.0, 1.0] * 10)
    assert mean == 0.5 and lo < 0.5 < hi
    _, lo2, hi2 = bootstrap_ci([0.0, 1.0] * 1000)
    assert hi2 - lo2 < (hi - lo) / 3
    assert bootstrap_ci([0.3] * 5) == (0.3, pytest.approx(0.3), pytest.approx(0.3))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from whyllm.model.tiny import tiny_model

    tmp = tmp_path_factory.mktemp("report")
    rows = [
        {
            "id": "a",
            "prompt": "When Mary and John went to the store, John gave a drink to",
            "target": " Mary",
        },
        {"id": "b", "prompt": "The capital of France is", "target": " Paris"},
        {"id": "c", "prompt": "Alice and Bob talked. Bob said hello to", "target": " Alice"},
        {"id": "bad", "prompt": ""},
    ]
    src = tmp / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    batch(src, ["predict", "explain:occlusion", "explain:saliency"], tmp / "out", model=tiny_model("llama"))
    return tmp / "out"


def test_summary_counts_ranks_and_finds_disagreements(folder):
    s = summarise(folder)
    assert s["rows"] == 4 and s["results"] == 12
    assert s["counts"]["predict"] == {"ok": 3, "error": 1}
    assert s["accuracy"]["rows"] == 3 and 0 <= s["accuracy"]["accuracy"] <= 1
    ranked = s["faithfulness"]
    assert [r["method"] for r in ranked] == sorted(
        (r["method"] for r in ranked),
        key=lambda m: -next(x["comprehensiveness"] for x in ranked if x["method"] == m),
    )
    assert {r["method"] for r in ranked} == {"explain:occlusion", "explain:saliency"}
    assert all(r["low"] <= r["comprehensiveness"] <= r["high"] for r in ranked)
    assert sum(d["count"] for d in s["drivers"]) == 6  # one top unit per ok explain row
    dis = s["disagreements"]
    assert {d["id"] for d in dis} == {"a", "b", "c"}
    assert [d["mean_spearman"] for d in dis] == sorted(d["mean_spearman"] for d in dis)
    assert len(s["errors"]) == 3 and all("empty" in e["error"] for e in s["errors"])


def test_html_report_is_self_contained(folder, tmp_path):
    page = write_report(folder, tmp_path / "r.html").read_text()
    for heading in (
        "Accuracy against targets",
        "ranked by faithfulness",
        "most often drive",
        "disagree most",
        "Error rows",
    ):
        assert heading in page
    assert "<script src" not in page and "http" not in page.replace("https://", "").split("<body>")[0]
