"""Terminal and HTML views of the internals results: lens grid, component bars, attention, patching.

Registered on import (``whyllm.render.terminal`` imports this module on first use). Views return
renderables / HTML strings and never print. Colour scales: probabilities one green hue on a log scale in
HTML (the terminal keeps green likely / red under 10%); signed values red (positive) / blue (negative),
scaled to the largest magnitude shown; attention weights purple.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from torch import Tensor

from whyllm.render import dispatch
from whyllm.render.html import PROB_LEGEND, bar, esc, heat_color, prob_color, signed_bar, tok
from whyllm.render.terminal import prob_style
from whyllm.render.text import fmt_prob, shorten, visible
from whyllm.results.internals import AttentionResult, ComponentsResult, LensResult, PatchResult

__all__ = ["attention_heatmap", "attention_lines_svg", "patch_rows", "signed_style"]

_MAX_COLS = 10  # positions shown in terminal grids (the last ones): fits 80 columns
_MAX_LENS_COLS = 8
_MAX_HTML_COLS = 64
_SIGNED_RAMP = "<span class='ramp signed'></span>"


def _p(p: float) -> str:
    return fmt_prob(p, 0)


def _short(text: str, n: int = 8) -> str:
    return shorten(visible(text), n)


def signed_style(value: float, scale: float) -> str:
    """Rich background for a signed value: red positive, blue negative, stronger when larger."""
    s = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    level = int(255 - 200 * abs(s))
    colour = f"rgb(255,{level},{level})" if s >= 0 else f"rgb({level},{level},255)"
    return f"black on {colour}"


def _signed_bar(value: float, scale: float, width: int = 20) -> Text:
    n = round(width * abs(value) / scale) if scale > 0 else 0
    left = Text(" " * (width - n) + "█" * n if value < 0 else " " * width, style="blue")
    right = Text("█" * n if value > 0 else "", style="red")
    return Text.assemble(left, "│", right)


def _signed_td(value: float, scale: float, text: str) -> str:
    return f"<td style='background:{heat_color(value / scale)}' title='{value:.4f}'>{text}</td>"


# ---- logit lens ------------------------------------------------------------------------------
def _last(n: int, limit: int) -> list[int]:
    return list(range(max(0, n - limit), n))


@dispatch.terminal.register
def _(r: LensResult) -> RenderableType:
    cols = _last(len(r.positions), _MAX_LENS_COLS)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("layer", style="dim", min_width=5, no_wrap=True)
    for j in cols:
        table.add_column(_short(r.input_tokens[r.positions[j]]), no_wrap=True)
    follow = r.target_probs is not None
    if follow:
        table.add_column(f"p({_short(r.target_token or '', 10)})", min_width=11, no_wrap=True)
        table.add_column("rank", justify="right", no_wrap=True)
    for i, name in enumerate(r.layer_names):
        cells: list[Text | str] = [name]
        for j in cols:
            cells.append(Text(_short(r.top_tokens[i][j][0]), style=prob_style(float(r.top_probs[i, j, 0]))))
        if follow:
            tp = float(r.target_probs[i, -1])
            cells.append(Text(f"{_p(tp)} " + "▇" * round(6 * tp), style=prob_style(tp)))
            cells.append(str(int(r.target_ranks[i, -1])))
        table.add_row(*cells)
    hidden = len(r.positions) - len(cols)
    note = "cell: top token decoded from the residual stream after that layer "
    note += "(green ≥ 0.5, yellow ≥ 0.1, red < 0.1)"
    note += "; target probability and rank at the last position" if follow else ""
    note += f"; {hidden} earlier position(s) not shown" if hidden else ""
    return Group(Text.assemble(("logit lens of ", "dim"), (r.prompt, "bold")), table, Text(note, style="dim"))


@dispatch.html.register
def _(r: LensResult) -> str:
    cols = _last(len(r.positions), _MAX_HTML_COLS)
    head = "".join(f"<th>{tok(r.input_tokens[r.positions[j]])}</th>" for j in cols)
    if r.target_probs is not None:
        head += f"<th>p({tok(r.target_token or '')})</th><th>rank</th>"
    rows = []
    for i, name in enumerate(r.layer_names):
        cells = ""
        for j in cols:
            hover = " | ".join(f"{t!r} {float(p):.3f}" for t, p in zip(r.top_tokens[i][j], r.top_probs[i, j],
                                                                       strict=True))
            style = f"background:{prob_color(float(r.top_probs[i, j, 0]))}"
            cells += f"<td>{tok(r.top_tokens[i][j][0], style, hover)}</td>"
        if r.target_probs is not None:
            tp = float(r.target_probs[i, -1])
            cells += f"<td>{bar(tp, 80)} {_p(tp)}</td><td>{int(r.target_ranks[i, -1])}</td>"
        rows.append(f"<tr><th>{esc(name)}</th>{cells}</tr>")
    return (
        f"<h2>Logit lens of <span class='prompt'>{esc(r.prompt)}</span></h2>"
        f"<div class='scroll'><table><tr><th>layer</th>{head}</tr>{''.join(rows)}</table></div>"
        "<p class='legend'>cell: top token after that layer (hover for the top-k); colour: its "
        f"{PROB_LEGEND}</p>"
    )


# ---- direct logit attribution -----------------------------------------------------------------
def _what(r: ComponentsResult) -> str:
    return repr(r.target_token) + (f" − {r.foil_token!r}" if r.foil_token is not None else "")


def _neuron_table(r: ComponentsResult) -> Table:
    table = Table("neuron", "activation", "value", box=box.SIMPLE_HEAD, title="top neurons of the top MLPs",
                  title_justify="left")
    scale = max(abs(x.value) for x in r.neurons)
    for n in r.neurons[:10]:
        value = Text(f"{n.value:+.4f}", style=signed_style(n.value, scale))
        table.add_row(f"L{n.layer}.N{n.index}", f"{n.activation:+.3f}", value)
    return table


@dispatch.terminal.register
def _(r: ComponentsResult) -> RenderableType:
    parts = sorted(r.parts, key=lambda p: -abs(p.value))[:16]
    scale = max([abs(p.value) for p in parts] + [1e-12])
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, just in [("part", "left"), ("value", "right"), ("", "left")]:
        table.add_column(col, justify=just)
    for p in parts:
        table.add_row(p.name, f"{p.value:+.3f}", _signed_bar(p.value, scale))
    capped = f" (pre-soft-cap; the capped output is {r.logit:.3f})" if r.softcap else ""
    out: list[RenderableType] = [
        Text.assemble(("direct logit attribution of ", "dim"), (_what(r), "bold cyan"), (" after ", "dim"),
                      (r.prompt, "bold")),
        table,
        Text(f"total {r.total:.4f}{capped}; parts sum to it within {abs(r.error):.1e}; "
             f"{len(r.parts)} parts, the {len(parts)} largest shown", style="dim"),
    ]
    if r.neurons:
        out.append(_neuron_table(r))
    return Group(*out)


@dispatch.html.register
def _(r: ComponentsResult) -> str:
    parts = sorted(r.parts, key=lambda p: -abs(p.value))[:30]
    scale = max([abs(p.value) for p in parts] + [1e-12])
    rows = "".join(
        f"<tr><td>{esc(p.name)}</td>{_signed_td(p.value, scale, f'{p.value:+.4f}')}"
        f"<td>{signed_bar(p.value / scale, 160)}</td></tr>"
        for p in parts
    )
    neurons = "".join(
        f"<tr><td>L{n.layer}.N{n.index}</td><td>{n.activation:+.3f}</td><td>{n.value:+.4f}</td></tr>"
        for n in r.neurons
    )
    if neurons:
        neurons = ("<h2>Top neurons</h2><table><tr><th>neuron</th><th>activation</th><th>value</th></tr>"
                   f"{neurons}</table>")
    capped = f" (pre-soft-cap; capped output {r.logit:.3f})" if r.softcap else ""
    foil = f" − {tok(r.foil_token)}" if r.foil_token is not None else ""
    return (
        f"<h2>Direct logit attribution of {tok(r.target_token)}{foil} after "
        f"<span class='prompt'>{esc(r.prompt)}</span></h2>"
        f"<table><tr><th>part</th><th>value</th><th>lowers | raises</th></tr>{rows}</table>"
        f"<p class='legend'>red adds to the logit (difference), blue takes away {_SIGNED_RAMP}"
        f" total {r.total:.4f}{esc(capped)}, error {abs(r.error):.1e}</p>{neurons}"
    )


# ---- attention ---------------------------------------------------------------------------------
def _chosen(r: AttentionResult, layer: int | None, head: int | None) -> tuple[int, int]:
    if layer is not None and head is not None:
        return r.layers.index(layer), r.heads.index(head)
    if r.importance is not None:
        return divmod(int(r.importance.abs().argmax()), len(r.heads))
    return len(r.layers) - 1, 0


def _shade(w: float) -> int:
    return 0 if w < 0.02 else min(4, 1 + int(w * 4))


def attention_heatmap(r: AttentionResult, layer: int | None = None, head: int | None = None,
                      max_tokens: int = 24) -> RenderableType:
    """Text heatmap of one head's pattern (default: the most important head shown); rows are queries."""
    i, j = _chosen(r, layer, head)
    pat = r.patterns[i, j]
    n = pat.shape[0]
    lo = max(0, n - max_tokens)
    shades = " ░▒▓█"
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(justify="right", style="cyan", no_wrap=True)
    table.add_column(no_wrap=True)
    for q in range(lo, n):
        row = "".join(shades[_shade(float(pat[q, k]))] * 2 for k in range(lo, n))
        table.add_row(_short(r.tokens[q], 10), Text(row, style="magenta"))
    window = f"; last {n - lo} positions)" if lo else ")"
    title = Text.assemble((f"L{r.layers[i]}.H{r.heads[j]}", "bold"),
                          " attention pattern (row: query, column: key" + window)
    return Group(title, table, Text("shade: weight 0 ' ' … 1 '█'", style="dim"))


@dispatch.terminal.register
def _(r: AttentionResult) -> RenderableType:
    out: list[RenderableType] = [Text.assemble(("attention of ", "dim"), (r.prompt, "bold"))]
    if r.importance is not None:
        scale = float(r.importance.abs().max()) or 1.0
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left",
                      title=f"head importance (direct logit attribution to {r.target_token!r})")
        table.add_column("layer", style="dim")
        for h in r.heads:
            table.add_column(f"H{h}", justify="right")
        for i, layer in enumerate(r.layers):
            values = [Text(f"{float(v):+.2f}", style=signed_style(float(v), scale)) for v in r.importance[i]]
            table.add_row(f"L{layer}", *values)
        out.append(table)
    out.append(attention_heatmap(r))
    return Group(*out)


def _importance_html(r: AttentionResult) -> str:
    if r.importance is None:
        return ""
    scale = float(r.importance.abs().max()) or 1.0
    head = "".join(f"<th>H{h}</th>" for h in r.heads)
    rows = "".join(
        f"<tr><th>L{layer}</th>"
        + "".join(_signed_td(float(v), scale, f"{float(v):+.2f}") for v in r.importance[a]) + "</tr>"
        for a, layer in enumerate(r.layers)
    )
    return (f"<h2>Head importance</h2><table><tr><th></th>{head}</tr>{rows}</table>"
            f"<p class='legend'>direct logit attribution of each head {_SIGNED_RAMP}</p>")


def _attn_td(w: float) -> str:
    return f"<td title='{w:.3f}' style='background:rgba(91,33,182,{w:.3f})'></td>"


_LINES_PER_QUERY = 12  # the line view draws each query's strongest keys only (as the explorer does)
_LINE_MIN = 0.005
# CSS-only highlighting (reports run no script): hovering a query's label keeps only its lines
_LINES_CSS = ("<style>.whyllm svg.lines:hover g.q line{opacity:.06}"
              ".whyllm svg.lines g.q:hover line{opacity:1;stroke-width:2.2}"
              ".whyllm svg.lines g.q:hover text{font-weight:700;fill:#0550ae}</style>")


def attention_lines_svg(pattern: Tensor, tokens: tuple[str, ...], name: str) -> str:
    """One head's pattern as a BertViz-style line view in inline SVG: queries left, keys right.

    Each query's :data:`_LINES_PER_QUERY` strongest keys (weight at least 0.005) get a line whose opacity
    is the weight; hovering a query keeps only its lines (CSS, no script).
    """
    n = len(tokens)
    row = 12 if n > 120 else 14 if n > 48 else 18
    width, xq, xk = 460, 150, 310
    y = [p * row + row / 2 + 3 for p in range(n)]  # a token's line ends; its label's baseline is 4 lower
    groups = []
    for q in range(n):
        top = pattern[q].topk(min(_LINES_PER_QUERY, n))
        weights = zip(top.values.tolist(), top.indices.tolist(), strict=True)
        lines = "".join(
            f'<line x1="{xq + 4}" y1="{y[q]:.1f}" x2="{xk - 4}" y2="{y[k]:.1f}" '
            f'stroke="#5b21b6" stroke-width="1.6" stroke-opacity="{min(1.0, w):.3f}"/>'
            for w, k in weights if w >= _LINE_MIN)
        label = (f'<text x="{xq}" y="{y[q] + 4:.1f}" text-anchor="end">'
                 f"{esc(shorten(visible(tokens[q]), 14))}</text>")
        groups.append(f'<g class="q">{lines}{label}</g>')
    keys = "".join(f'<text x="{xk}" y="{y[k] + 4:.1f}">{esc(shorten(visible(t), 14))}</text>'
                   for k, t in enumerate(tokens))
    label = (f"Line view of {name}: each of the {n} query tokens (left) joined to its strongest keys "
             "(right); opacity is the attention weight")
    height, font = row * n + 6, 12 if row > 14 else row - 3
    return (
        f"<h2>Line view of {esc(name)}</h2>{_LINES_CSS}<div class='scroll'>"
        f'<svg class="lines" role="img" aria-label="{esc(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="{font}">'
        f"{''.join(groups)}{keys}</svg></div>"
        "<p class='legend'>left: queries (the positions attending) · right: keys (attended to) · a line's "
        f"opacity is the weight (the {_LINES_PER_QUERY} strongest keys of each query) · hover a query to "
        "keep only its lines · the grid above shows the same weights (hover a cell for its value)</p>"
    )


@dispatch.html.register
def _(r: AttentionResult) -> str:
    i, j = _chosen(r, None, None)
    pat = r.patterns[i, j]
    n = len(r.tokens)
    shown = _last(n, _MAX_HTML_COLS)
    head = "".join(f"<th>{tok(r.tokens[k])}</th>" for k in shown)
    rows = "".join(
        f"<tr><th>{tok(r.tokens[q])}</th>"
        + "".join(_attn_td(float(pat[q, k])) for k in shown)
        + "</tr>"
        for q in shown
    )
    return (
        f"<h2>Attention of <span class='prompt'>{esc(r.prompt)}</span>: L{r.layers[i]}.H{r.heads[j]}</h2>"
        f"<div class='scroll'><table><tr><th>query \\ key</th>{head}</tr>{rows}</table></div>"
        "<p class='legend'>weight <span class='ramp attn'></span> 0 to 1 (the most important head shown)</p>"
        + attention_lines_svg(pat, r.tokens, f"L{r.layers[i]}.H{r.heads[j]}") + _importance_html(r)
    )


# ---- patching ----------------------------------------------------------------------------------
def patch_rows(r: PatchResult) -> tuple[list[str], list[str], list[list[float]]]:
    """Row labels, column labels and values of the grid as a 2-D table (layer x head rows when 3-D)."""
    names = {"layer": [f"L{x}" for x in r.layers], "head": [f"H{x}" for x in r.heads],
             "pos": [r.tokens[p] for p in r.positions]}
    grid = r.grid.tolist()
    if len(r.axes) == 3:
        rows = [f"{a}.{b}" for a in names[r.axes[0]] for b in names[r.axes[1]]]
        return rows, names[r.axes[2]], [row for block in grid for row in block]
    return names[r.axes[0]], names[r.axes[1]], grid


def _patch_title(r: PatchResult) -> str:
    what = f"{r.target_token!r}" + (f" − {r.foil_token!r}" if r.foil_token is not None else "")
    how = {"activation": "activation patching", "attribution": "attribution patching (AtP estimate)",
           "causal_trace": "causal tracing"}.get(r.method, r.method)
    return (f"{how} of {r.component}; metric {r.metric} of {what}: "
            f"clean {r.clean:.3f}, corrupted {r.corrupted:.3f}")


@dispatch.terminal.register
def _(r: PatchResult) -> RenderableType:
    rows, cols, grid = patch_rows(r)
    shown = _last(len(cols), _MAX_COLS)
    scale = max([abs(v) for row in grid for v in row] + [1.0])
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("", style="dim", no_wrap=True)
    for c in shown:
        table.add_column(_short(cols[c], 5), justify="right", no_wrap=True, min_width=5)
    for name, row in zip(rows, grid, strict=True):
        table.add_row(name, *(Text(f"{row[c]:.2f}", style=signed_style(row[c], scale)) for c in shown))
    notes = "cell: share of the clean − corrupted difference recovered (1 = clean, 0 = corrupted; "
    notes += "red > 0, blue < 0)"
    if len(shown) < len(cols):
        notes += f"; {len(cols) - len(shown)} earlier column(s) not shown"
    if r.spearman is not None:
        notes += f"; Spearman rank correlation with real patching: {r.spearman:.3f}"
    return Group(Text(_patch_title(r), style="bold"), table, Text(notes, style="dim"))


@dispatch.html.register
def _(r: PatchResult) -> str:
    rows, cols, grid = patch_rows(r)
    scale = max([abs(v) for row in grid for v in row] + [1.0])
    head = "".join(f"<th>{tok(c)}</th>" for c in cols)
    body = "".join(
        f"<tr><th>{esc(name)}</th>" + "".join(_signed_td(v, scale, f"{v:.2f}") for v in row) + "</tr>"
        for name, row in zip(rows, grid, strict=True)
    )
    extra = f"; Spearman vs real patching {r.spearman:.3f}" if r.spearman is not None else ""
    corrupted = f"<p class='dim'>corrupted: {esc(r.corrupted_prompt)}</p>" if r.corrupted_prompt else ""
    return (
        f"<h2>{esc(_patch_title(r))}</h2><p class='prompt'>{esc(r.clean_prompt)}</p>{corrupted}"
        f"<div class='scroll'><table><tr><th></th>{head}</tr>{body}</table></div>"
        f"<p class='legend'>share recovered {_SIGNED_RAMP} −{scale:.2f} … +{scale:.2f} "
        f"(1 = clean){esc(extra)}</p>"
    )
