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
    assert prob_rgb(0.05) == prob_rgb(0.0)  # every pick under 10% is the same red
    assert prob_rgb(0.9)[1] > prob_rgb(0.2)[1] - 0.3 and prob_rgb(0.9)[0] < prob_rgb(0.2)[0]
    assert signed_rgb(0) == (1.0, 1.0, 1.0)
    assert signed_rgb(1)[0] > signed_rgb(1)[2] and signed_rgb(-1)[2] > signed_rgb(-1)[0]


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
