"""Terminal and HTML views of QK attribution: the ranked pairs, the marginals and a source x source heatmap.

Registered on import (:mod:`whyllm.render` imports this module). Signed values are red (raise the
score: the head attends more) and blue (lower it), scaled to the largest magnitude shown.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from whyllm.render import dispatch
from whyllm.render.html import esc, heat_color, signed_bar, tok
from whyllm.render.internals import signed_style
from whyllm.render.text import shorten, visible
from whyllm.results.qk import QKResult

__all__ = ["LOOSE", "headline", "heatmap_sources", "warning"]

_TERMINAL_PAIRS = 15
_HTML_PAIRS = 30
_MARGINALS = 6
_HEATMAP_SOURCES = 24  # per axis
LOOSE = 1e-3  # a relative error above this is shown as a warning (low precision, e.g. bfloat16)


def _pos(r: QKResult, p: int) -> str:
    return f"{visible(r.tokens[p])!r} (pos {p})"


def headline(r: QKResult) -> str:
    """The result in one plain sentence: the score, the weight, the largest pair."""
    a, b, v = r.ranked(1)[0]
    cap = " (before soft-capping)" if r.softcap else ""
    return (f"the score of {r.name} attending from {_pos(r, r.query)} to {_pos(r, r.key)} is {r.score:.3g}"
            f"{cap}, attention weight {r.probability:.3f}; the largest pair is {a} at the query with {b} at "
            f"the key ({v:+.3g})")


def warning(r: QKResult) -> str | None:
    """A plain warning when the pairs miss the score by more than :data:`LOOSE` of it, else ``None``."""
    if r.relative_error <= LOOSE:
        return None
    return (f"warning: the pairs miss the real score by {r.error:.3g} ({100 * r.relative_error:.2g}% of "
            "it), more than float32 rounding; the model runs in low precision (e.g. bfloat16), so read small "
            "pairs with care")


def _footer(r: QKResult) -> str:
    return (f"the {len(r.sources)}×{len(r.sources)} pairs sum to the score within {r.error:.1e} "
            f"({r.relative_error:.1e} relative); softmax of the recomputed scores matches the model's "
            f"attention weights within {r.weights_check:.1e}. {r.linearisation}")


def _marginal_rows(r: QKResult, values, k: int) -> list[tuple[str, float]]:
    order = values.abs().argsort(descending=True, stable=True)[:k].tolist()
    return [(r.sources[i], float(values[i])) for i in order]


def _bar(value: float, scale: float, width: int = 16) -> Text:
    n = round(width * abs(value) / scale) if scale > 0 else 0
    left = Text(" " * (width - n) + "█" * n if value < 0 else " " * width, style="blue")
    return Text.assemble(left, "│", Text("█" * n if value > 0 else "", style="red"))


@dispatch.terminal.register
def _(r: QKResult) -> RenderableType:
    pairs = r.ranked(_TERMINAL_PAIRS)
    scale = max([abs(v) for _, _, v in pairs] + [1e-12])
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, just in [("#", "right"), ("query source", "left"), ("key source", "left"), ("value", "right"),
                      ("lowers │ raises", "left")]:
        table.add_column(col, justify=just, no_wrap=True)
    for i, (a, b, v) in enumerate(pairs, 1):
        table.add_row(str(i), a, b, Text(f"{v:+.3f}", style=signed_style(v, scale)), _bar(v, scale))
    side = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="summed over the other side",
                 title_justify="left")
    for col in ("query source", "value", "key source", "value"):
        side.add_column(col, justify="right" if col == "value" else "left", no_wrap=True)
    qs = _marginal_rows(r, r.query_marginals, _MARGINALS)
    ks = _marginal_rows(r, r.key_marginals, _MARGINALS)
    for (qa, qv), (ka, kv) in zip(qs, ks, strict=False):
        side.add_row(qa, f"{qv:+.3f}", ka, f"{kv:+.3f}")
    warn = warning(r)
    return Group(
        Text.assemble(("QK attribution of ", "dim"), (r.prompt, "bold")),
        Text(headline(r), style="bold"),
        *([Text(warn, style="bold yellow")] if warn else []),
        table,
        side,
        Text(f"{len(r.sources) ** 2} pairs, the {len(pairs)} largest shown; red raises the score (more "
             f"attention), blue lowers it. {_footer(r)}", style="dim"),
    )


def heatmap_sources(r: QKResult, k: int = _HEATMAP_SOURCES) -> tuple[list[int], list[int]]:
    """Indices of the query and key sources the heatmap shows: the ``k`` with the largest pairs, in order."""
    rows = r.parts.abs().amax(1).argsort(descending=True)[:k].sort().values.tolist()
    cols = r.parts.abs().amax(0).argsort(descending=True)[:k].sort().values.tolist()
    return rows, cols


def _heatmap(r: QKResult) -> str:
    rows, cols = heatmap_sources(r)
    scale = float(r.parts.abs().max()) or 1.0
    head = "".join(f"<th scope='col' class='rot'><span>{esc(r.sources[j])}</span></th>" for j in cols)
    body = ""
    for i in rows:
        cells = "".join(
            f"<td style='background:{heat_color(float(r.parts[i, j]) / scale)}' "
            f"title='{esc(r.sources[i])} × {esc(r.sources[j])}: {float(r.parts[i, j]):+.4f}'></td>"
            for j in cols
        )
        body += f"<tr><th scope='row'>{esc(r.sources[i])}</th>{cells}</tr>"
    hidden = len(r.sources) - min(len(rows), len(cols))
    note = f"; the {len(rows)} sources with the largest pairs on each side shown" if hidden > 0 else ""
    return (
        "<div class='scroll'><table class='qkmap'><caption>rows: query sources at "
        f"{tok(r.tokens[r.query])} (pos {r.query}) · columns: key sources at {tok(r.tokens[r.key])} "
        f"(pos {r.key})</caption><tr><th>query \\ key</th>{head}</tr>{body}</table></div>"
        f"<p class='legend'>pair contribution to the score <span class='ramp signed'></span> "
        f"−{scale:.3g} … +{scale:.3g} (hover a cell for its value){esc(note)}</p>"
    )


def _pair_table(r: QKResult) -> str:
    pairs = r.ranked(_HTML_PAIRS)
    scale = max([abs(v) for _, _, v in pairs] + [1e-12])
    rows = "".join(
        f"<tr><td>{n}</td><td>{esc(a)}</td><td>{esc(b)}</td>"
        f"<td style='background:{heat_color(v / scale)}'>{v:+.4f}</td>"
        f"<td>{signed_bar(v / scale, 160)}</td></tr>"
        for n, (a, b, v) in enumerate(pairs, 1)
    )
    return ("<table><tr><th>#</th><th>query source</th><th>key source</th><th>value</th>"
            f"<th>lowers | raises</th></tr>{rows}</table>")


def _marginals_html(r: QKResult) -> str:
    def rows(values) -> str:
        return "".join(f"<tr><td>{esc(s)}</td><td>{v:+.4f}</td></tr>"
                       for s, v in _marginal_rows(r, values, _MARGINALS * 2))

    return ("<table><tr><th>query source</th><th>summed over key sources</th></tr>"
            f"{rows(r.query_marginals)}</table>"
            "<table><tr><th>key source</th><th>summed over query sources</th></tr>"
            f"{rows(r.key_marginals)}</table>")


@dispatch.html.register
def _(r: QKResult) -> str:
    style = ("<style>.whyllm .qkmap td{width:14px;height:14px;padding:0;border:1px solid #f0f2f4}"
             ".whyllm .qkmap th{font-size:11px;white-space:nowrap}"
             ".whyllm .qkmap th.rot{vertical-align:bottom;padding:2px 0}"
             ".whyllm .qkmap th.rot span{writing-mode:vertical-rl;transform:rotate(180deg)}"
             ".whyllm .qkmap caption{text-align:left;font-size:12px;color:#57606a}</style>")
    warn = f"<p class='warn'>{esc(warning(r))}</p>" if warning(r) else ""
    return (
        f"{style}<h2>QK attribution of {esc(r.name)} in "
        f"<span class='prompt'>{esc(shorten(r.prompt, 200))}</span></h2><p>{esc(headline(r))}</p>"
        f"{warn}<h2>Query source × key source</h2>{_heatmap(r)}"
        f"<h2>Largest pairs</h2>{_pair_table(r)}<h2>Each side summed over the other</h2>{_marginals_html(r)}"
        f"<p class='legend'>{esc(_footer(r))}</p>"
    )
