"""Static images of results (matplotlib, imported lazily): the app's views, for papers and slides.

:func:`save_png` draws a result with :func:`whyllm.render.dispatch.figure`; each view here draws from
the result's JSON document (``result.to_dict()``). Colours are those of the app and the HTML reports: one
green hue on a log scale for probabilities (0.01% faint to 100% strongest, with a numeric colour bar; red
only outlines a generated token sampled although under 10% likely), red/blue for signed scores, purple
for attention weights. Every axis is labelled with its unit. Token whitespace is made visible (``␣``,
``↵``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from whyllm.files import write_atomic
from whyllm.render import dispatch
from whyllm.render.attribution import method_name, random_sentence, target_free
from whyllm.render.text import LOW_PROB, prob_log_rgba, shorten, signed_rgba, visible
from whyllm.results.attribution import AttributionResult, Faithfulness
from whyllm.results.generate import GenerationResult, SamplesResult
from whyllm.results.internals import AttentionResult, ComponentsResult, LensResult, PatchResult
from whyllm.results.predict import PredictResult

__all__ = ["prob_cmap", "prob_norm", "prob_rgb", "save_png", "signed_rgb"]

_MONO = ["DejaVu Sans Mono", "monospace"]
_WRAP = 96  # characters per line of token text
_PT = 9  # font size of token text
_PROB_TICKS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # the log scale's ends and decades, as the app's legend
_PROB_LABELS = ("0.01%", "0.1%", "1%", "10%", "100%")
_UNLIKELY = "#cf222e"  # outline of a token sampled although under LOW_PROB likely


def _on_white(r: float, g: float, b: float, a: float) -> tuple[float, float, float]:
    return tuple((1 - a) + a * c / 255 for c in (r, g, b))  # type: ignore[return-value]


def prob_rgb(p: float) -> tuple[float, float, float]:
    """Return the app's probability colour (one green, stronger with log10 p) as RGB on white."""
    return _on_white(*prob_log_rgba(p))


def signed_rgb(s: float) -> tuple[float, float, float]:
    """Return the app's colour for a signed score in [-1, 1] (red positive, blue negative) as RGB."""
    return _on_white(*signed_rgba(s))


def _cmap(fn: Callable[[float], tuple[float, float, float]], lo: float, hi: float, name: str):
    from matplotlib.colors import ListedColormap

    return ListedColormap([fn(lo + (hi - lo) * i / 255) for i in range(256)], name=name)


def prob_cmap():
    """The probability colour map, to use with :func:`prob_norm` (log scale, 0.01% to 100%)."""
    return _cmap(lambda t: prob_rgb(10 ** (4 * t - 4)), 0, 1, "whyllm_prob")


def prob_norm():
    """The log normalisation of probabilities from 0.01% to 100% (values below are clipped to 0.01%)."""
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=_PROB_TICKS[0], vmax=1.0, clip=True)


def _short(text: str, n: int = 70) -> str:
    return shorten(text.replace("\n", " "), n)


def _token_lines(items: list[tuple[str, Any]], width: int = _WRAP) -> list[list[tuple[int, str, Any]]]:
    """Wrap ``(text, colour)`` items into lines of ``(column, text, colour)``; tokens get visible whitespace.

    Items with colour ``None`` are plain labels (kept as they are); a colour may be ``(face, edge)``.
    """
    lines: list[list[tuple[int, str, Any]]] = [[]]
    col = 0
    for text, colour in items:
        text = (visible(text) if colour is not None else text) or "∅"
        if col and col + len(text) > width:
            lines.append([])
            col = 0
        lines[-1].append((col, text, colour))
        col += len(text) + 1
    return lines


def _draw_tokens(ax, lines: list[list[tuple[int, str, Any]]], top: float = 0.0) -> float:
    """Draw wrapped token lines in character units (x: column, y: line), returns the next free row."""
    for row, line in enumerate(lines):
        for col, text, colour in line:
            face, edge = colour if colour is not None and len(colour) == 2 else (colour, "none")
            box = {"boxstyle": "square,pad=0.1", "facecolor": face or (1, 1, 1), "edgecolor": edge}
            ax.text(col, top + row, text, family=_MONO, fontsize=_PT, va="center", ha="left", bbox=box)
    return top + len(lines)


def _text_figure(rows: float, below: float = 0.0):
    """Figure whose axes measure one monospace character per x unit and one line per y unit.

    ``below``: inches left free under the text (and its colour bar) for another panel.
    """
    from matplotlib.figure import Figure

    char_in, line_in = _PT * 0.602 / 72, _PT * 2.0 / 72  # DejaVu Sans Mono advance width; line pitch
    width, height = (_WRAP + 2) * char_in, rows * line_in
    fw, fh = width + 0.4, height + 1.1 + below
    fig = Figure(figsize=(fw, fh))
    ax = fig.add_axes((0.2 / fw, (0.75 + below) / fh, width / fw, height / fh))
    ax.set_xlim(-1, _WRAP + 1)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.axis("off")
    return fig, ax


def save_png(result: Any, path: str | Path, *, dpi: int = 150) -> Path:
    """Draw ``result`` (any whyllm result with a PNG view) as a PNG at ``path``.

    Returns:
        The path written.

    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*tight_layout.*", category=UserWarning)
        fig = dispatch.figure(result)
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", facecolor="white",
                                                   format="png"), "PNG image")
    return Path(path)


def _new(width: float, height: float, rows: int = 1, cols: int = 1):
    """Make a pyplot-free Figure (no global backend state; drawn with Agg when saved) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, max(1.2, height)))
    return fig, fig.subplots(rows, cols, squeeze=rows == cols == 1)


def _legend_axes(fig, ax, vertical: bool) -> dict[str, Any]:
    if vertical:
        return {"ax": ax, "orientation": "vertical", "fraction": 0.03, "pad": 0.02}
    box, h = ax.get_position(), fig.get_figheight()  # a thin bar under text views
    return {"cax": fig.add_axes((box.x0 + box.width * 0.3, box.y0 - 0.35 / h, box.width * 0.4, 0.08 / h)),
            "orientation": "horizontal"}


def _prob_legend(fig, ax, vertical: bool = False) -> None:
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(cmap=prob_cmap(), norm=prob_norm())
    bar = fig.colorbar(sm, **_legend_axes(fig, ax, vertical))
    bar.set_ticks(list(_PROB_TICKS), labels=list(_PROB_LABELS))
    bar.minorticks_off()
    bar.set_label("probability (log scale)", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _signed_legend(fig, ax, vmax: float, label: str, vertical: bool = False) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sm = ScalarMappable(cmap=_cmap(signed_rgb, -1, 1, "whyllm_signed"), norm=Normalize(-vmax, vmax))
    bar = fig.colorbar(sm, **_legend_axes(fig, ax, vertical))
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _predict(doc: dict[str, Any]):
    top = doc["top"]
    fig, ax = _new(7, 0.32 * len(top) + 1)
    labels = [f"{visible(c['token'])}" for c in top]
    probs = [c["prob"] for c in top]
    ax.barh(range(len(top)), probs, color=[prob_rgb(p) for p in probs], edgecolor="#4c78a8")
    ax.set_yticks(range(len(top)), labels, family=_MONO)
    ax.invert_yaxis()
    for i, p in enumerate(probs):
        ax.text(p, i, f" {100 * p:.1f}%", va="center", fontsize=8)
    ax.set_xlabel("probability of the next token (bar length; colour: log scale)")
    ax.set_ylabel("candidate token")
    ax.set_xlim(0, max(probs or [1]) * 1.2)
    ax.set_title(f"Next token after “{_short(doc['prompt'])}” (entropy {doc['entropy']:.2f} nats)",
                 fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    _prob_legend(fig, ax, vertical=True)
    return fig


def _generate(doc: dict[str, Any]):
    items = [(w, None) for w in doc["prompt"].split()]
    items += [(s["token"], (prob_rgb(s["prob"]), _UNLIKELY if s["prob"] < LOW_PROB else "none"))
              for s in doc["steps"]]
    lines = _token_lines(items)
    fig, ax = _text_figure(len(lines))
    _draw_tokens(ax, lines)
    ax.set_title(f"Generation after the prompt (stopped: {doc['stop_reason']}, "
                 f"seed {doc['settings'].get('seed')}); red outline: sampled although under "
                 f"{LOW_PROB:.0%} likely", fontsize=10, loc="left")
    _prob_legend(fig, ax)
    return fig


def _samples(doc: dict[str, Any]):
    lines: list[list[tuple[int, str, Any]]] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        if depth:
            label = f"p={node['probs'][0]:.3f} #{','.join(str(s + 1) for s in node['samples'])}"
            items = [("  " * depth + "└ " + label, None)]
        else:
            items = [(_short(doc["prompt"], 60), None)]
        items += [(t, prob_rgb(p)) for t, p in zip(node["tokens"], node["probs"], strict=True)]
        lines.extend(_token_lines(items))
        for child in node["children"]:
            walk(child, depth + 1)

    walk(doc["tree"], 0)
    fig, ax = _text_figure(len(lines))
    _draw_tokens(ax, lines)
    ax.set_title(f"{len(doc['samples'])} samples: where they diverge (p: probability of the branching draw)",
                 fontsize=10, loc="left")
    _prob_legend(fig, ax)
    return fig


def _attribution(doc: dict[str, Any]):
    units = doc.get("units") or []
    vmax = max([abs(u["score"]) for u in units] + [1e-12])
    lines = _token_lines([(u["text"], signed_rgb(u["score"] / vmax)) for u in units])
    f = Faithfulness.from_dict(doc["faithfulness"]) if doc.get("faithfulness") else None
    curve = 2.6 if f is not None else 0.0
    fig, ax = _text_figure(len(lines) + 1, below=curve)
    rows = _draw_tokens(ax, lines)
    notes = []
    if f is not None:
        notes.append(f"comprehensiveness {f.comprehensiveness:.3f} · sufficiency {f.sufficiency:.3f} · "
                     f"deletion AUC {f.deletion_auc:.3f} (nats)")
    if doc.get("completeness_error") is not None:
        notes.append(f"completeness error {100 * doc['completeness_error']:.2f}% ({doc.get('steps')} steps)")
    if notes:
        ax.text(0, rows + 0.3, "   ".join(notes), fontsize=8, color="#57606a", va="center")
    how = f"{method_name(doc['method'])}, by {doc['granularity']}"
    if target_free(doc["method"]):
        title = f"Where the model looks from the last position ({how}; independent of the target)"
    else:
        why = f"“{visible(doc['target'])}”"
        if doc.get("foil"):
            why += f" rather than “{visible(doc['foil'])}”"
        title = f"Why {why}? ({how})"
    ax.set_title(title, fontsize=10, loc="left")
    _signed_legend(fig, ax, vmax, _SCORE_UNITS.get(doc["method"], _NATS))
    if f is not None:
        _deletion_panel(fig, f, contrast=bool(doc.get("foil")), height=curve)
    return fig


# what an attribution score measures, per method (the colour bar's label)
_NATS = "attribution to f, in nats (red: raises f)"
_SCORE_UNITS = {
    "saliency": "gradient norm of f (unsigned; nats per embedding unit)",
    "attention": "attention weight (0 to 1)", "attention_rollout": "rolled-out attention weight (0 to 1)",
    "context_ablation": "surrogate weight, in nats of f (red: raises f)",
}


def _deletion_panel(fig, f: Faithfulness, contrast: bool, height: float) -> None:
    """The deletion curve against its random-order baseline, in the ``height`` inches under the text."""
    fw, fh = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((0.9 / fw, 0.45 / fh, min(5.0, fw - 1.4) / fw, (height - 1.0) / fh))
    xs = [100 * x for x in f.deletion_fractions]
    ax.plot(xs, f.deletion_scores, color="#0969da", linewidth=2, label="method's order (top first)")
    if f.random_deletion_scores is not None:
        ax.plot(xs, f.random_deletion_scores, color="#bc4c00", linewidth=2, linestyle="--",
                label=f"random order (mean of {f.random_orders})")
    ax.axhline(0, color="#8c959f", linewidth=0.6)
    ax.set_xlabel("share of units removed (%)", fontsize=8)
    ax.set_ylabel("f (nats)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False, loc="best")
    ax.spines[["top", "right"]].set_visible(False)
    words = random_sentence(f, contrast)
    ax.set_title("Deletion curve" + (f". {words[0].upper()}{words[1:]}" if words else ""), fontsize=8,
                 loc="left", wrap=True)


def _heatmap(ax, values: list[list[float]], colours: Callable[[float], Any], labels: list[list[str]] | None,
             xticks: list[str], yticks: list[str]) -> None:
    import numpy as np

    rgb = np.array([[colours(v) for v in row] for row in values])  # (rows, cols, 3)
    ax.imshow(rgb, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(xticks)), [visible(t) for t in xticks], rotation=90, family=_MONO, fontsize=7)
    ax.set_yticks(range(len(yticks)), yticks, fontsize=7)
    if labels is not None and len(xticks) * len(yticks) <= 900:
        for i, row in enumerate(labels):
            for j, text in enumerate(row):
                ax.text(j, i, _short(visible(text), 8), ha="center", va="center", fontsize=6, family=_MONO)


def _lens(doc: dict[str, Any]):
    layers = doc["layers"]
    tokens = [doc["input_tokens"][p] for p in doc["positions"]]
    probs = [[c["top"][0]["prob"] for c in layer["positions"]] for layer in layers]
    labels = [[c["top"][0]["token"] for c in layer["positions"]] for layer in layers]
    fig, ax = _new(min(18, 2 + 0.75 * len(tokens)), 0.32 * len(layers) + 2)
    _heatmap(ax, probs, prob_rgb, labels, tokens, [layer["name"] for layer in layers])
    ax.set_title(f"Logit lens of “{_short(doc['prompt'])}” (cell: top token, colour: its probability)",
                 fontsize=10)
    ax.set_xlabel("input token (position)", fontsize=8)
    ax.set_ylabel("residual stream after layer", fontsize=8)
    _prob_legend(fig, ax, vertical=True)
    return fig


def _components(doc: dict[str, Any]):
    parts = sorted(doc["parts"], key=lambda p: -abs(p["value"]))[:20]
    vmax = max([abs(p["value"]) for p in parts] + [1e-12])
    fig, ax = _new(7, 0.3 * len(parts) + 1.2)
    values = [p["value"] for p in parts]
    ax.barh(range(len(parts)), values, color=[signed_rgb(v / vmax) for v in values], edgecolor="#57606a",
            linewidth=0.4)
    ax.set_yticks(range(len(parts)), [p["name"] for p in parts], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="#57606a", linewidth=0.8)
    what = f"“{visible(doc['target_token'])}”"
    if doc.get("foil_token"):
        what += f" − “{visible(doc['foil_token'])}”"
    ax.set_title(f"Direct logit attribution to {what}: total {doc['total']:.3f}", fontsize=10)
    ax.set_xlabel("direct contribution to the logit" + (" difference" if doc.get("foil_token") else "")
                  + " (logit units)")
    ax.set_ylabel("component (by |contribution|)")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _attention(doc: dict[str, Any]):
    import numpy as np

    heads = doc["heads"][:16]
    tokens = doc["input_tokens"][doc["offset"]:]
    cols = min(4, len(heads)) or 1
    rows = (len(heads) + cols - 1) // cols or 1
    fig, axes = _new(3.2 * cols, 3.2 * rows, rows, cols)
    cmap = _cmap(lambda w: _on_white(91, 33, 182, w), 0, 1, "whyllm_attn")
    for ax, head in zip(axes.flat, heads, strict=False):
        image = ax.imshow(np.array(head["pattern"]), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(head["name"], fontsize=9)
        ax.set_xlabel("key position", fontsize=7)
        ax.set_ylabel("query position", fontsize=7)
        if len(tokens) <= 32:
            labels = [visible(t) for t in tokens]
            ax.set_xticks(range(len(tokens)), labels, rotation=90, fontsize=6, family=_MONO)
            ax.set_yticks(range(len(tokens)), labels, fontsize=6, family=_MONO)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax in list(axes.flat)[len(heads):]:
        ax.axis("off")
    fig.suptitle("Attention patterns (row: query, column: key)", fontsize=10)
    fig.tight_layout()
    if heads:
        bar = fig.colorbar(image, ax=list(axes.flat), fraction=0.02, pad=0.02)
        bar.set_label("attention weight (0 to 1)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return fig


def _patch(doc: dict[str, Any]):
    grid, axes = doc["grid"], doc["axes"]
    names = {"layer": [f"L{x}" for x in doc["layers"]], "head": [f"H{x}" for x in doc["heads"]],
             "pos": [doc["tokens"][p] for p in doc["positions"]]}
    if len(axes) == 3:  # (layer, head, pos) -> rows "L.H"
        rows = [f"{a}.{b}" for a in names[axes[0]] for b in names[axes[1]]]
        grid = [r for layer in grid for r in layer]
        cols = names[axes[2]]
    else:
        rows, cols = names[axes[0]], names[axes[1]]
    vmax = max([abs(v) for row in grid for v in row] + [1.0])
    fig, ax = _new(min(18, 2 + 0.6 * len(cols)), 0.3 * len(rows) + 2)
    labels = [[f"{v:.2f}" for v in row] for row in grid]
    _heatmap(ax, grid, lambda v: signed_rgb(v / vmax), labels, cols, rows)
    ax.set_title(f"{doc['method']} patching of {doc['component']} ({doc['metric']}: "
                 f"clean {doc['clean']:.3f}, corrupted {doc['corrupted']:.3f})", fontsize=10)
    ax.set_xlabel({"pos": "position (token)", "head": "head", "layer": "layer"}[axes[-1]], fontsize=8)
    ax.set_ylabel(" · ".join(axes[:-1]), fontsize=8)
    _signed_legend(fig, ax, vmax, "share of the difference restored (1 = all)", vertical=True)
    return fig


_VIEWS: tuple[tuple[type, Callable[[dict[str, Any]], Any]], ...] = (
    (PredictResult, _predict), (GenerationResult, _generate), (SamplesResult, _samples),
    (AttributionResult, _attribution), (LensResult, _lens), (ComponentsResult, _components),
    (AttentionResult, _attention), (PatchResult, _patch),
)
for _type, _draw in _VIEWS:
    dispatch.figure.register(_type)(lambda result, draw=_draw: draw(result.to_dict()))
