"""PNG views: one drawing per result kind, from the result or its JSON document."""

from __future__ import annotations

import pytest
from PIL import Image

from whyllm.errors import InputError
from whyllm.methods.registry import get_analysis
from whyllm.render.dispatch import figure
from whyllm.render.plot import prob_rgb, save_png, signed_rgb

PROMPT = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
CALLS = {
    "predict": ("predict", {"prompt": PROMPT, "top_k": 7}),
    "generate": ("generate", {"prompt": PROMPT, "max_new_tokens": 12, "seed": 0}),
    "samples": ("sample", {"prompt": PROMPT, "n": 4, "max_new_tokens": 6, "seed": 0}),
    "attribution": ("explain", {"prompt": PROMPT, "target": " Mary", "foil": " John", "method": "occlusion"}),
    "lens": ("lens", {"prompt": PROMPT, "target": " Mary", "top_k": 2}),
    "components": ("components", {"prompt": PROMPT, "target": " Mary"}),
    "attention": ("attention", {"prompt": PROMPT, "layers": [1]}),
    "patch": ("patch", {"clean": PROMPT, "corrupted": CORRUPTED, "target": " Mary", "foil": " John"}),
}


@pytest.fixture(scope="module")
def results():
    from whyllm.model.tiny import tiny_model

    model = tiny_model("llama")
    return {kind: get_analysis(name)(model, **kw) for kind, (name, kw) in CALLS.items()}


def test_every_kind_has_a_drawing(results):
    assert {type(r) for r in results.values()} <= set(figure.registry)


@pytest.mark.parametrize("kind", list(CALLS))
def test_save_png_writes_an_image(results, kind, tmp_path):
    result = results[kind]
    assert result.kind == kind
    path = save_png(result, tmp_path / f"{kind}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        assert img.width > 300 and img.height > 100
        assert img.width < 4000 and img.height < 4000


def test_drawings_show_the_data(results):
    doc = {k: r.to_dict() for k, r in results.items()}
    bars = figure(results["predict"]).axes[0].patches
    assert len(bars) == 7 and bars[0].get_width() == pytest.approx(doc["predict"]["top"][0]["prob"])
    lens = figure(results["lens"]).axes[0].images[0].get_array()
    assert lens.shape[:2] == (len(doc["lens"]["layers"]), len(doc["lens"]["positions"]))
    patch = figure(results["patch"]).axes[0].images[0].get_array()
    assert patch.shape[:2] == (len(doc["patch"]["grid"]), len(doc["patch"]["grid"][0]))
    heads = [ax for ax in figure(results["attention"]).axes if ax.images]
    assert len(heads) == len(doc["attention"]["heads"])
    assert len(figure(results["components"]).axes[0].patches) == min(20, len(doc["components"]["parts"]))
    tokens = [t for t in figure(results["generate"]).axes[0].texts if t.get_bbox_patch() is not None]
    assert len(tokens) == len(PROMPT.split()) + len(doc["generate"]["steps"])
    units = [t for t in figure(results["attribution"]).axes[0].texts if t.get_bbox_patch() is not None]
    assert len(units) == len(doc["attribution"]["units"])


def test_colours_match_the_app():
    from whyllm.render.html import heat_color, prob_color

    def css(rgb_on_white):  # "rgba(r,g,b,a)" of the HTML views, laid on white like the PNGs
        r, g, b, a = (float(x) for x in rgb_on_white[5:-1].split(","))
        return tuple((1 - a) + a * c / 255 for c in (r, g, b))

    for p in (1e-6, 1e-4, 0.003, 0.05, 0.2, 0.9, 1.0):
        assert prob_rgb(p) == pytest.approx(css(prob_color(p)))  # the HTML reports' log scale
    greens = [prob_rgb(p) for p in (1e-4, 1e-3, 1e-2, 0.1, 1.0)]
    assert all(g[0] > h[0] for g, h in zip(greens, greens[1:], strict=False))  # likelier is stronger
    assert prob_rgb(1e-6) == prob_rgb(1e-4)  # the scale starts at 0.01%
    for s in (-1.0, -0.3, 0.0, 0.5, 1.0):
        assert signed_rgb(s) == pytest.approx(css(heat_color(s)))  # the HTML reports' diverging scale
    assert signed_rgb(0) == (1.0, 1.0, 1.0)
    assert signed_rgb(1)[0] > signed_rgb(1)[2] and signed_rgb(-1)[2] > signed_rgb(-1)[0]


def _colour_bars(fig):
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def test_legends_are_numeric_and_axes_labelled(results):
    for kind in ("predict", "generate", "samples", "lens"):
        bars = _colour_bars(figure(results[kind]))
        assert len(bars) == 1, kind
        bar = bars[0]
        label = bar.get_ylabel() or bar.get_xlabel()
        ticks = [t.get_text() for t in (bar.get_yticklabels() or bar.get_xticklabels())]
        assert label == "probability (log scale)" and ticks == ["0.01%", "0.1%", "1%", "10%", "100%"], kind
    lens = figure(results["lens"]).axes[0]
    assert lens.get_xlabel() and lens.get_ylabel() == "residual stream after layer"
    assert "logit units" in figure(results["components"]).axes[0].get_xlabel()
    att = figure(results["attention"])
    assert {ax.get_xlabel() for ax in att.axes if ax.images} == {"key position"}
    assert _colour_bars(att)[0].get_ylabel() == "attention weight (0 to 1)"
    patch = figure(results["patch"]).axes[0]
    assert patch.get_xlabel() and patch.get_ylabel()


def test_generation_outlines_unlikely_picks_in_red(results):
    doc = results["generate"].to_dict()
    boxes = [t.get_bbox_patch() for t in figure(results["generate"]).axes[0].texts if t.get_bbox_patch()]
    steps = boxes[len(PROMPT.split()):]
    red = [b.get_edgecolor()[3] > 0 for b in steps]
    assert red == [s["prob"] < 0.1 for s in doc["steps"]]


def test_attribution_draws_the_deletion_curve_against_random_order(results):
    fig = figure(results["attribution"])
    f = results["attribution"].faithfulness
    curve = [ax for ax in fig.axes if ax.get_xlabel() == "share of units removed (%)"]
    assert len(curve) == 1 and curve[0].get_ylabel() == "f (nats)"
    lines = curve[0].get_lines()
    assert [ln.get_label() for ln in lines[:2]] == ["method's order (top first)", "random order (mean of 3)"]
    assert list(lines[1].get_ydata()) == pytest.approx(f.random_deletion_scores)
    title = curve[0].get_title(loc="left")
    assert "lowers the margin" in title and "deletion AUC" in title
    assert "attribution to f, in nats" in _colour_bars(fig)[0].get_xlabel()


def test_a_type_without_a_view_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no PNG view for dict; results with one: .*PredictResult"):
        save_png({"kind": "mystery"}, tmp_path / "x.png")


def test_any_text_draws_without_warnings(results, tmp_path):
    doc = results["predict"].to_dict()
    doc["prompt"] = "emoji 🙂 CJK 漢字 RTL שלום </script>\n\t"
    doc["top"][0]["token"] = "\u200b🙂\x00"
    odd = type(results["predict"]).from_dict(doc)
    save_png(odd, tmp_path / "odd.png")  # warnings are errors in this suite


def test_cli_png_option_draws_the_view(results, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from whyllm.cli import app
    from whyllm.model.tiny import tiny_model

    monkeypatch.setattr("whyllm.model.load.load_model", lambda *a, **k: tiny_model("llama"))
    out = tmp_path / "predict.png"
    r = CliRunner().invoke(app, ["predict", PROMPT, "--png", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:4] == b"\x89PNG"
