import re

import pytest

from tests.helpers.render import plain_text as _text
from whyllm.methods.qk import qk
from whyllm.render.qk import headline, heatmap_sources, warning

PROMPT = "When Mary and John went to the store, John gave a drink to"
EVIL = "<b>x</b> & 'y'"




@pytest.fixture
def result(tiny):
    return qk(tiny("gpt2"), PROMPT, layer=1, head=2, key=2)


def test_headline_says_it_in_words(result):
    text = headline(result)
    assert text.startswith("the score of L1.H2 attending from '␣to' (pos 14) to '␣Mary' (pos 2) is ")
    a, b, v = result.ranked(1)[0]
    assert f"the largest pair is {a} at the query with {b} at the key ({v:+.3g})" in text


def test_terminal_view_ranks_pairs_by_magnitude(result):
    text = _text(result)
    assert "QK attribution of When Mary" in " ".join(text.split())
    values = [float(v) for v in re.findall(r"^\s+\d+\s+\S+\s+\S+\s+([+-]\d+\.\d+)", text, re.M)]
    assert len(values) == 15 and [abs(v) for v in values] == sorted((abs(v) for v in values), reverse=True)
    assert "summed over the other side" in text and "pairs sum to the score within" in " ".join(text.split())


def test_html_heatmap_has_labelled_axes_and_every_shown_cell(result):
    html = result.to_html()
    assert html.startswith("<!doctype html>") and "<script" not in html
    assert "rows: query sources at" in html and "columns: key sources at" in html
    rows, cols = heatmap_sources(result)
    assert html.count("<td style='background:rgba") >= len(rows) * len(cols)
    assert "ramp signed" in html and "Largest pairs" in html


def test_html_escapes_the_prompt(tiny):
    html = qk(tiny("llama"), EVIL, layer=0, head=0).to_html()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_heatmap_keeps_the_largest_sources(tiny):
    r = qk(tiny("qwen3"), PROMPT, layer=1, head=0, key=3)
    rows, cols = heatmap_sources(r, k=3)
    assert len(rows) == len(cols) == 3 and rows == sorted(rows)
    assert int(r.parts.abs().amax(1).argmax()) in rows and int(r.parts.abs().amax(0).argmax()) in cols


def test_low_precision_is_shown_as_a_warning(tiny):
    import dataclasses

    r = qk(tiny("llama"), PROMPT, layer=1, head=0, key=2)
    assert warning(r) is None and "warning" not in _text(r)
    loose = dataclasses.replace(r, error=0.01 * abs(r.score))
    assert "1% of it" in warning(loose) and "warning: the pairs miss" in " ".join(_text(loose).split())
    assert "class='warn'" in loose.to_html()
