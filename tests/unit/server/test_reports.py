"""Self-contained HTML reports and notebook views: one offline file, every text escaped."""

from __future__ import annotations

import re

import pytest

from tests.helpers.server import CORRUPTED, PROMPT, XSS
from whyllm.methods.registry import get_analysis

CALLS = [
    ("predict", {"target": " Mary", "top_k": 5}),
    ("generate", {"max_new_tokens": 5, "seed": 0}),
    ("sample", {"n": 3, "max_new_tokens": 4, "seed": 0}),
    ("explain", {"method": "occlusion"}),
    ("lens", {"top_k": 2}),
    ("components", {}),
    ("attention", {"layers": [0]}),
    ("patch", {}),
]


def _run(model, name, prompt, kwargs):
    if name == "patch":  # same token length as the clean prompt
        return get_analysis(name)(model, prompt, prompt.replace("John gave", "Mary gave"), **kwargs)
    return get_analysis(name)(model, prompt, **kwargs)


@pytest.fixture(scope="module")
def model():
    from whyllm.model.tiny import tiny_model

    return tiny_model("llama")


@pytest.mark.parametrize(("name", "kwargs"), CALLS, ids=[c[0] for c in CALLS])
def test_report_is_one_offline_file(model, name, kwargs, tmp_path):
    result = _run(model, name, PROMPT, kwargs)
    path = tmp_path / "report.html"
    html = result.to_html(path)
    assert path.read_text(encoding="utf-8") == html
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert html.count("<html") == 1 and "<style>" in html
    assert "default-src 'none'" in html  # the report's own CSP: nothing can load, nothing can run
    assert not re.search(r"https?://", html), "a report must not reference any host"
    assert not re.search(r"""\b(?:src|href|action)\s*=|@import|url\(|<script|<link|<iframe""", html, re.I)


@pytest.mark.parametrize(("name", "kwargs"), CALLS, ids=[c[0] for c in CALLS])
def test_html_reports_and_notebook_views_escape_every_text(model, name, kwargs):
    prompt = XSS + " " + PROMPT
    if name == "patch":
        result = get_analysis(name)(model, prompt, XSS + " " + CORRUPTED, **kwargs)
    else:
        result = get_analysis(name)(model, prompt, **kwargs)
    for html in (result.to_html(), result._repr_html_()):
        assert "<img" not in html and "<script" not in html.lower()
        assert "&lt;img src=x onerror=alert(1)&gt;" in html or "onerror" not in html


def test_notebook_view_carries_its_scoped_style(model):
    html = get_analysis("predict")(model, PROMPT)._repr_html_()
    assert html.startswith('<div class="whyllm"><style>') and ".whyllm .tok" in html
    assert "Next token after" in html
