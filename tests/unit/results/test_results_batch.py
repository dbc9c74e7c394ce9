"""BatchSummary: a result like the others (JSON round trip, DataFrame, terminal and HTML views)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from whyllm import BatchSummary, batch
from whyllm.errors import InputError
from whyllm.render import dispatch


def _summary(**kw) -> BatchSummary:
    base = dict(out="runs/x", rows=5, runs=("predict", "explain:occlusion"), total=10, skipped=2, done=8,
                errors=1, seconds=4.0, meta={"model": "tiny", "method": "batch"})
    return BatchSummary(**{**base, **kw})


def _text(result) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(result)
    return console.file.getvalue()


def test_round_trip_dataframe_and_checks():
    s = _summary()
    doc = json.loads(s.to_json())
    assert doc["kind"] == "batch_summary" and doc["rows_per_second"] == 2.0 and doc["model"] == "tiny"
    back = BatchSummary.from_dict(doc)
    assert back.to_dict() == s.to_dict() and back.runs == s.runs
    frame = s.to_dataframe().set_index("measure")["value"]
    assert frame["done"] == 8 and frame["remaining"] == 0 and frame["rows_per_second"] == 2.0
    with pytest.raises(ValueError, match="cannot exceed"):
        _summary(errors=9)
    with pytest.raises(InputError, match="not 'batch_summary'"):
        BatchSummary.from_dict({**doc, "kind": "predict"})


def test_views_say_what_was_done_and_warn_about_errors_and_missing_rows():
    text = _text(_summary())
    assert "8 rows written (1 errors), 2 already done, 10 in all" in text and "2.0 rows/s" in text
    assert "warning: 1 error rows" in text and "whyllm report runs/x" in text
    assert "not written yet" not in text
    assert "warning: 3 rows are not written yet" in _text(_summary(done=5, errors=0))
    html = dispatch.html(_summary())
    assert "class='warn'" in html and "8 rows written" in html
    assert "<h3>Batch run</h3>" in _summary().to_html()


def test_batch_returns_a_summary_with_provenance(tiny, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "The dog"}\n{"prompt": ""}\n')
    s = batch(src, ["predict"], tmp_path / "out", model=tiny("llama"), chunk=1)
    assert isinstance(s, BatchSummary) and (s.done, s.errors, s.remaining) == (2, 1, 0)
    assert s.meta["method"] == "batch" and s.meta["params"]["engine"] == "embedded"
    assert BatchSummary.from_dict(s.to_dict()).to_dict() == s.to_dict()
