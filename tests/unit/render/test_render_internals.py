
import pytest

from tests.helpers.render import plain_text as _text
from whyllm.methods.attention import attention
from whyllm.methods.components import components
from whyllm.methods.lens import logit_lens
from whyllm.methods.patching import compare_patching, patch
from whyllm.render.html import fragment
from whyllm.render.internals import attention_heatmap, patch_rows

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
EVIL = "<b>x</b> & 'y'"




@pytest.fixture
def results(tiny):
    m = tiny("llama")
    return {
        "lens": logit_lens(m, CLEAN, target=" Mary"),
        "components": components(m, CLEAN, target=" Mary", foil=" John"),
        "attention": attention(m, CLEAN),
        "patch": patch(m, CLEAN, CORRUPTED, target=" Mary", foil=" John"),
        "heads": patch(m, CLEAN, CORRUPTED, component="head", per_position=True, positions=[-1, -2]),
        "atp": compare_patching(m, CLEAN, CORRUPTED, component="head", target=" Mary", foil=" John"),
    }


def test_lens_view(results):
    text = _text(results["lens"])
    assert "logit lens of When Mary" in text and "embed" in text and "L1" in text
    assert "p(␣Mary)" in text and "earlier position(s) not shown" in text


def test_components_view(results):
    r = results["components"]
    text = _text(r)
    assert "' Mary' − ' John'" in text and r.top("head", 1)[0].name in text
    assert f"total {r.total:.4f}" in text and "top neurons" in text


def test_attention_view_and_heatmap(results):
    r = results["attention"]
    text = _text(r)
    assert "head importance" in text and "attention pattern" in text and "␣drink" in text
    chosen = _text(attention_heatmap(r, layer=0, head=2))
    assert chosen.startswith("L0.H2 attention pattern") and "<bos>  ██" in chosen


def test_patch_view(results):
    text = _text(results["patch"])
    assert "activation patching of resid_pre" in text and "L1" in text and "1.00" in text
    assert "Spearman" in _text(results["atp"])
    rows, cols, grid = patch_rows(results["heads"])
    assert rows[:2] == ["L0.H0", "L0.H1"] and cols == [" drink", " to"]
    assert len(grid) == len(rows) and len(grid[0]) == 2


@pytest.mark.parametrize("name", ["lens", "components", "attention", "patch", "heads", "atp"])
def test_html_is_self_contained_and_escaped(results, name):
    html = results[name].to_html()
    assert html.startswith("<!doctype html>") and "<script" not in html
    assert "legend" in results[name]._repr_html_()


def test_html_escapes_model_text(tiny):
    r = logit_lens(tiny("llama"), EVIL)
    html = r._repr_html_()
    assert "<b>x</b>" not in html and "&lt;b&gt;" in html


def test_attention_report_has_a_line_view(results):
    r = results["attention"]
    html = fragment(r)
    name = html.split("Line view of ")[1].split("<")[0]
    layer, head = (int(x[1:]) for x in name.split("."))
    pat = r.pattern(layer, head)
    n = len(r.tokens)
    svg = html.split('<svg class="lines"')[1].split("</svg>")[0]
    assert svg.count("<text") == 2 * n and svg.count('<g class="q">') == n  # queries and keys
    drawn = sum(min(12, int((row >= 0.005).sum())) for row in pat)  # the 12 strongest keys per query
    assert svg.count("<line") == drawn > 0
    opacities = sorted(float(x.split('"')[0]) for x in svg.split('stroke-opacity="')[1:])
    assert opacities[-1] == pytest.approx(min(1.0, float(pat.max())), abs=1e-3)  # opacity = weight
    assert "g.q:hover line" in html and "hover a query" in html
    assert 'role="img"' in svg.split(">")[0] and "query tokens (left)" in svg.split(">")[0]
