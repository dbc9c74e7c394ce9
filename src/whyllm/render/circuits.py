"""Views of :class:`~whyllm.results.circuits.CircuitResult`: the circuit in words, its edges, its curve.

The HTML view draws the graph as SVG (layers bottom to top, heads left to right, the MLP at the right of
its layer, edges from writer to reader with width = |score| and red = helps the target, blue = works
against it) with a script-free size control: one radio button per curve size hides the edges beyond it
and shows that size's measured faithfulness. Hovering an edge or node shows its values; a node links to
its row in the node table below.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from whyllm.render import dispatch
from whyllm.render.html import esc, heat_color, signed_bar, table
from whyllm.render.internals import signed_style
from whyllm.render.text import shorten, visible
from whyllm.results.circuits import CircuitNode, CircuitResult

__all__ = ["summary", "warnings"]

_MAX_DRAWN = 300  # edges drawn in the SVG (the strongest)
_MAX_ROWS = 30  # edges listed in the tables


def _pct(x: float) -> str:
    """A share as a percentage, never "-0%"."""
    text = f"{x:.0%}"
    return "0%" if text == "-0%" else text


def _metric(r: CircuitResult) -> str:
    target = repr(visible(r.target_token))
    return (
        f"logit({target}) − logit({visible(r.foil_token)!r})"
        if r.foil_token is not None
        else f"logit({target})"
    )


def summary(r: CircuitResult) -> str:
    """The result in plain words."""
    rows = {c["edges"]: c for c in r.curve_rows()}
    random = rows.get(r.circuit_edges, {}).get("random_faithfulness")
    than = f"; random circuits of that size recover {_pct(random)}" if random is not None else ""
    how = {
        "faithfulness": "the smallest measured size recovering 80%",
        "share": "a share of the total |score|",
        "edges": "the size asked for",
    }.get(r.chosen_by, r.chosen_by)
    ablated = (
        "the corrupted prompt's activations"
        if r.ablation == "corrupted"
        else "each node's mean over the prompt's positions"
    )
    return (
        f"Keeping the top {r.circuit_edges} of {len(r.scores)} edges (by |score|; {how}) and giving every "
        f"other edge {ablated} recovers {_pct(r.faithfulness)} of the difference between the clean run "
        f"({r.clean:.3f}) and the fully ablated run ({r.corrupted:.3f}) of the metric {_metric(r)}{than}."
    )


def warnings(r: CircuitResult) -> list[str]:
    """What makes this result less trustworthy, in plain words (empty when nothing does)."""
    out = []
    if r.method == "eap":
        out.append(
            "plain EAP is a first-order estimate from one gradient; eap-ig (integrated gradients) "
            "follows saturated paths and usually ranks edges better"
        )
    if r.faithfulness > 1.2:
        out.append(
            f"faithfulness {r.faithfulness:.0%} is above 100%: edges left out of the circuit work "
            "against the answer, so the circuit overshoots the clean run"
        )
    smaller = [(float(f), n) for n, f in zip(r.curve_sizes, r.curve, strict=True) if n < len(r.scores)]
    whole = r.circuit_edges == len(r.scores)
    if r.chosen_by == "faithfulness" and smaller and (r.faithfulness < 0.8 or whole):
        best, at = max(smaller)
        out.append(f"no measured circuit smaller than the whole graph recovers 80% (the best: {_pct(best)} "
                   f"with {at} edges): the answer is spread over many paths; a corrupted prompt that changes "
                   "one word, and a foil, usually isolate a smaller circuit")
    if r.faithfulness < 0.5:
        out.append(
            f"the circuit recovers only {r.faithfulness:.0%}: the answer is spread over more edges "
            "than kept; choose a larger size (--edges or --share)"
        )
    if r.random_curve is not None:
        idx = [i for i, s in enumerate(r.curve_sizes) if s < len(r.scores)]
        if idx and all(float(r.curve[i]) <= float(r.random_curve[i]) + 0.1 for i in idx):
            out.append(
                "the top-scored circuits do no better than random ones of the same size: the edge "
                "scores do not find the mechanism here"
            )
    if abs(r.clean - r.corrupted) < 0.1:
        out.append(
            f"clean and ablated runs differ by only {abs(r.clean - r.corrupted):.3f}: normalised "
            "faithfulness divides by this small difference and is noisy"
        )
    return out


# ---- terminal ---------------------------------------------------------------------------------
@dispatch.terminal.register
def _(r: CircuitResult) -> RenderableType:
    scale = max(float(r.scores.abs().max()) if len(r.scores) else 0.0, 1e-12)
    edges = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title="strongest edges (score: metric change "
        "estimated when the edge alone is ablated; > 0 helps the target)",
    )
    for col in ("#", "from", "to", "input", "score", "in circuit"):
        edges.add_column(col, justify="right" if col in ("#", "score") else "left", no_wrap=True)
    for i, e in enumerate(r.edge_rows(_MAX_ROWS), 1):
        edges.add_row(
            str(i),
            e["source"],
            e["target"],
            e["port"],
            Text(f"{e['score']:+.4f}", style=signed_style(e["score"], scale)),
            "yes" if e["in_circuit"] else "",
        )
    curve = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="faithfulness curve (1 = clean, 0 = ablated)")
    for col in ("edges kept", "top-scored", "random (mean ± sd)"):
        curve.add_column(col, justify="right")
    for c in r.curve_rows():
        rnd = (
            ""
            if c["random_faithfulness"] is None
            else f"{c['random_faithfulness']:.2f} ± {c['random_std']:.2f}"
        )
        curve.add_row(str(c["edges"]), f"{c['faithfulness'] + 0.0:.2f}".replace("-0.00", "0.00"), rnd)
    parts: list[RenderableType] = [
        Text(f"circuit ({r.method}, {r.ablation} ablation): {_metric(r)}", style="bold"),
        Text(summary(r)),
    ]
    parts += [Text(f"warning: {w}", style="bold yellow") for w in warnings(r)]
    parts += [edges, curve]
    if r.neurons:
        neurons = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="top neurons of the circuit's MLPs")
        for col in ("neuron", "score", "direct effect", "activation", "raises"):
            neurons.add_column(col, justify="left" if col in ("neuron", "raises") else "right")
        for x in r.neurons:
            neurons.add_row(
                f"L{x.layer}.N{x.index}",
                f"{x.score:+.4f}",
                f"{x.direct:+.4f}",
                f"{x.activation:.3f}",
                " ".join(repr(visible(t)) for t in x.top_tokens[:5]),
            )
        parts.append(neurons)
    if len(r.scores) > _MAX_ROWS:
        parts.append(
            Text(f"{len(r.scores) - _MAX_ROWS} weaker edges not listed (--json has every edge)", style="dim")
        )
    return Group(*parts)


# ---- HTML -------------------------------------------------------------------------------------
def _layout(r: CircuitResult) -> tuple[dict[int, tuple[float, float]], int, int]:
    """Node index -> (x, y) in grid units, and the grid's width and height."""
    layers = max([n.layer for n in r.nodes if n.layer is not None] + [0]) + 1
    per_layer = max(sum(1 for n in r.nodes if n.layer == 0 and n.position in (None, 0)), 1)
    tokens = len(r.tokens)
    # per position: one group of columns per token; merged: one group, the token embeddings spread below it
    width = tokens * (per_layer + 1) if r.per_position else max(per_layer + 1, round(tokens * 0.9))
    pos: dict[int, tuple[float, float]] = {}
    slot: dict[tuple[int | None, int | None], int] = {}
    for i, n in enumerate(r.nodes):
        p = n.position or 0
        group = p * (per_layer + 1) if r.per_position else 0.0
        if n.kind == "embed":
            x = group + per_layer / 2 if r.per_position else (p + 0.5) * width / tokens - 0.5
            pos[i] = (x, 0.0)
        elif n.kind == "logits":
            pos[i] = (group + per_layer / 2, layers + 1.0)
        else:
            key = (n.layer, n.position)
            slot[key] = slot.get(key, -1) + 1
            pos[i] = (group + slot[key], n.layer + 1.0)
    return pos, width, layers + 2


def _label(r: CircuitResult, n: CircuitNode) -> str:
    """A node's short label: ``H1``, ``KV0``, ``mlp``, ``logits``, or an embedding's token."""
    if n.kind == "embed" and n.position is not None:
        return shorten(visible(r.tokens[n.position]), 6)
    return n.id.split("@")[0].split(".", 1)[-1]


def _bucket(rank: int, sizes: list[int]) -> int:
    """Index of the smallest size whose circuit holds the edge of this rank."""
    return next((i for i, s in enumerate(sizes) if rank < s), len(sizes))


def _svg(r: CircuitResult, sizes: list[int]) -> str:
    pos, width, height = _layout(r)
    dx, dy, pad, left = 46.0, 54.0, 30.0, 64.0
    n_draw = min(
        len(r.scores),
        max(s for s in sizes if s <= _MAX_DRAWN) if any(s <= _MAX_DRAWN for s in sizes) else _MAX_DRAWN,
    )
    scale = max(float(r.scores[:n_draw].abs().max()) if n_draw else 0.0, 1e-12)
    first: dict[int, int] = {}  # node -> the smallest size bucket of an edge touching it
    for rank in range(n_draw):
        for i in (int(r.edge_source[rank]), int(r.edge_target[rank])):
            first.setdefault(i, _bucket(rank, sizes))

    def xy(i: int) -> tuple[float, float]:
        x, y = pos[i]
        return left + x * dx, pad + (height - 1 - y) * dy

    lines = []
    for rank, e in enumerate(r.edge_rows(n_draw)):
        s_i, t_i = int(r.edge_source[rank]), int(r.edge_target[rank])
        (x1, y1), (x2, y2) = xy(s_i), xy(t_i)
        colour = heat_color(1.0 if e["score"] > 0 else -1.0)
        w = 0.6 + 5.0 * abs(e["score"]) / scale
        mid = (y1 + y2) / 2
        lines.append(
            f"<path class='k{_bucket(rank, sizes)}' d='M{x1:.1f},{y1 - 8:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},"
            f"{mid:.1f} {x2:.1f},{y2 + 8:.1f}' stroke='{colour}' stroke-width='{w:.2f}' fill='none' "
            f"stroke-opacity='0.75'><title>#{rank + 1} {esc(e['source'])} → {esc(e['target'])} "
            f"({esc(e['port'])}): score {e['score']:+.4f}</title></path>"
        )
    shapes = []
    for i, n in enumerate(r.nodes):
        if i not in first and n.kind not in ("embed", "logits"):
            continue
        x, y = xy(i)
        label = _label(r, n)
        fill = {"head": "#fff", "kv": "#eee", "mlp": "#f3efe2", "embed": "#e8f0e8", "logits": "#e8ecf6"}[
            n.kind
        ]
        shapes.append(
            f"<a class='k{first.get(i, 0)}' href='#node-{esc(n.id)}'><rect x='{x - 20:.1f}' y='{y - 9:.1f}' "
            "width='40' height='18' "
            "rx='4' "
            f"fill='{fill}' stroke='#555'><title>{esc(n.id)} ({esc(n.kind)})</title></rect>"
            f"<text x='{x:.1f}' y='{y + 4:.1f}' font-size='9' text-anchor='middle'>{esc(label)}</text></a>"
        )
    axis = "".join(
        f"<text x='4' y='{pad + (height - 1 - y) * dy + 4:.1f}' font-size='9' fill='#444'>{esc(t)}</text>"
        for y, t in [(0, "embed")]
        + [(layer + 1, f"L{layer}") for layer in range(height - 2)]
        + [(height - 1, "logits")]
    )
    w_px, h_px = left + pad + width * dx, pad * 2 + (height - 1) * dy
    return (
        f"<svg class='graph' role='img' aria-label='circuit graph: layers bottom to top, the strongest "
        f"{n_draw} edges; the edge table below lists them' width='{w_px:.0f}' height='{h_px:.0f}' "
        f"viewBox='0 0 {w_px:.0f} {h_px:.0f}' xmlns='http://www.w3.org/2000/svg'>{axis}"
        f"{''.join(lines)}{''.join(shapes)}</svg>"
    )


def _controls(r: CircuitResult, sizes: list[int]) -> tuple[str, str]:
    """Script-free size control: radio buttons and the CSS that hides edges beyond the chosen size."""
    rows = {c["edges"]: c for c in r.curve_rows()}
    chosen = sizes.index(r.circuit_edges) if r.circuit_edges in sizes else len(sizes) - 1
    radios, facts, css = [], [], []
    for j, s in enumerate(sizes):
        radios.append(
            f"<input type='radio' name='cz' id='cz{j}' {'checked' if j == chosen else ''}>"
            f"<label for='cz{j}'>{s}</label>"
        )
        c = rows.get(s)
        if c is not None:
            rnd = (
                ""
                if c["random_faithfulness"] is None
                else f"; random circuits of that size: {_pct(c['random_faithfulness'])}"
            )
            text = f"top {s} edges: faithfulness {_pct(c['faithfulness'])}{rnd}"
        else:
            text = f"top {s} edges"
        facts.append(f"<p class='f{j}'>{esc(text)}</p>")
        hidden = ", ".join(f".cz #cz{j}:checked ~ .graphbox .k{i}" for i in range(j + 1, len(sizes) + 1))
        if hidden:
            css.append(f"{hidden} {{display:none}}")
        css.append(f".cz #cz{j}:checked ~ .facts .f{j} {{display:block}}")
    style = ".cz input{margin-left:.6em}.cz .facts p{display:none;font-weight:600}" + "".join(css)
    return "".join(radios) + f"<div class='facts'>{''.join(facts)}</div>", style


def _curve_svg(r: CircuitResult) -> str:
    """The faithfulness curve: edges kept (log scale) against normalised faithfulness."""
    import math

    w, h, pad = 420.0, 180.0, 34.0
    sizes = list(r.curve_sizes)
    lo, hi = math.log10(max(1, sizes[0])), math.log10(max(sizes[-1], 2))
    ys = r.curve.tolist() + (r.random_curve.tolist() if r.random_curve is not None else [])
    y_lo, y_hi = min([0.0, *ys]), max([1.0, *ys])

    def pt(s: int, f: float) -> str:
        x = pad + (math.log10(max(s, 1)) - lo) / max(hi - lo, 1e-9) * (w - 2 * pad)
        y = h - pad - (f - y_lo) / max(y_hi - y_lo, 1e-9) * (h - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    def line(values: list[float], colour: str, name: str) -> str:
        pts = " ".join(pt(s, f) for s, f in zip(sizes, values, strict=True))
        return (f"<polyline points='{pts}' fill='none' stroke='{colour}' stroke-width='2'>"
                f"<title>{name}</title></polyline>")

    parts = [line(r.curve.tolist(), "#b3261e", "top-scored circuits")]
    if r.random_curve is not None:
        parts.append(line(r.random_curve.tolist(), "#777", "random circuits"))
    one = h - pad - (1 - y_lo) / max(y_hi - y_lo, 1e-9) * (h - 2 * pad)
    zero = h - pad - (0 - y_lo) / max(y_hi - y_lo, 1e-9) * (h - 2 * pad)
    return (
        "<svg role='img' aria-label='faithfulness curve; the table below holds the values' "
        f"width='{w:.0f}' "
        f"height='{h:.0f}' xmlns='http://www.w3.org/2000/svg'>"
        f"<line x1='{pad}' x2='{w - pad}' y1='{one:.1f}' y2='{one:.1f}' stroke='#ccc' stroke-dasharray='3'/>"
        f"<line x1='{pad}' x2='{w - pad}' y1='{zero:.1f}' y2='{zero:.1f}' stroke='#ccc'/>"
        f"<text x='4' y='{one + 4:.1f}' font-size='10'>1</text>"
        f"<text x='4' y='{zero + 4:.1f}' font-size='10'>0</text>"
        f"{''.join(parts)}<text x='{w / 2:.0f}' y='{h - 6:.0f}' font-size='10' text-anchor='middle'>"
        "edges kept "
        f"(log scale, {sizes[0]}…{sizes[-1]})</text><text x='{pad}' y='12' font-size='10'>faithfulness "
        "(red: top-scored, grey: random)</text></svg>"
    )


def _node_rows(r: CircuitResult) -> str:
    kept = r.circuit_nodes()
    neurons: dict[str, list[str]] = {}
    for x in r.neurons:
        neurons.setdefault(x.node, []).append(
            f"N{x.index} score {x.score:+.3f}, direct {x.direct:+.3f}, raises "
            + " ".join(repr(visible(t)) for t in x.top_tokens[:3])
        )
    src, dst = r.edge_source[: r.circuit_edges].tolist(), r.edge_target[: r.circuit_edges].tolist()
    index = {n.id: i for i, n in enumerate(r.nodes)}

    def total(n: CircuitNode, ends: list[int]) -> float:
        i = index[n.id]
        return sum(float(r.scores[k]) for k, e in enumerate(ends) if e == i)

    keys = {a.node: ", ".join(f"{visible(t)!r} (pos {p}) {w:.2f}" for p, t, w in a.keys) for a in r.attention}
    lens = {x.layer: ", ".join(f"{visible(t)!r} {q:.2f}" for t, q in x.top) for x in r.lens}

    def details(n: CircuitNode) -> str:
        """What the node does: a head's strongest keys, an MLP's neurons; the lens after its layer."""
        base = n.id.split("@")[0]
        what = [f"attends to {keys[base]}"] if base in keys else []
        what += [f"neurons: {'; '.join(neurons[base])}"] if base in neurons else []
        what += [f"lens after L{n.layer}: {lens[n.layer]}"] if n.layer in lens else []
        return esc(" · ".join(what))

    rows = [
        [f"<span id='node-{esc(n.id)}'>{esc(n.id)}</span>", esc(n.kind), f"{total(n, dst):+.3f}",
         f"{total(n, src):+.3f}", details(n)]
        for n in kept
    ]
    what = "what it does (attention from the last token, top neurons, logit lens after its layer)"
    return table(["node", "kind", "into it (sum of scores)", "out of it", what], rows)


@dispatch.html.register
def _(r: CircuitResult) -> str:
    sizes = sorted(set(r.curve_sizes) | {r.circuit_edges})
    controls, style = _controls(r, sizes)
    scale = max(float(r.scores.abs().max()) if len(r.scores) else 0.0, 1e-12)
    edge_rows = [
        [
            str(i),
            esc(e["source"]),
            esc(e["target"]),
            esc(e["port"]),
            f"{signed_bar(e['score'] / scale)} {e['score']:+.4f}",
            "yes" if e["in_circuit"] else "",
        ]
        for i, e in enumerate(r.edge_rows(_MAX_ROWS), 1)
    ]
    def num(x: float) -> str:
        return f"{x + 0.0:.3f}".replace("-0.000", "0.000")

    curve_rows = [
        [
            str(c["edges"]),
            num(c["faithfulness"]),
            ""
            if c["random_faithfulness"] is None
            else f"{num(c['random_faithfulness'])} ± {num(c['random_std'])}",
        ]
        for c in r.curve_rows()
    ]
    warn = "".join(f"<p class='warn' role='alert'>⚠ {esc(w)}</p>" for w in warnings(r))
    corrupted = (
        f"<p class='dim'>corrupted: {esc(r.corrupted_prompt)}</p>"
        if r.corrupted_prompt
        else "<p class='dim'>ablation: each node's mean over the prompt's positions</p>"
    )
    return (
        f"<style>{style}</style><h2>circuit ({esc(r.method)}): {esc(_metric(r))}</h2>"
        f"<p class='prompt'>{esc(r.prompt)}</p>{corrupted}<p>{esc(summary(r))}</p>{warn}"
        f"<div class='cz'><span>circuit size (edges kept):</span>{controls}"
        f"<div class='graphbox scroll'>{_svg(r, sizes)}</div></div>"
        "<p class='legend'>edge width: |score|; red: helps the target, blue: works against it; "
        f"at most {_MAX_DRAWN} edges drawn. Hover for values; a node links to its row below.</p>"
        f"<h3>faithfulness curve</h3>{_curve_svg(r)}"
        f"{table(['edges kept', 'faithfulness (top-scored)', 'random (mean ± sd)'], curve_rows)}"
        f"<h3>strongest edges</h3><p class='dim'>score: the metric change estimated when this edge alone "
        f"carries the ablated value (metric units).</p>"
        f"{table(['#', 'from', 'to', 'input', 'score', 'in circuit'], edge_rows)}"
        f"<h3>nodes of the circuit</h3>{_node_rows(r)}"
    )


# ---- PNG --------------------------------------------------------------------------------------
@dispatch.figure.register
def _(r: CircuitResult):
    """The circuit's graph (its edges, width = |score|, red helps / blue hurts) and the faithfulness curve."""
    from matplotlib.figure import Figure

    pos, width, height = _layout(r)
    n = min(r.circuit_edges, _MAX_DRAWN)
    fig = Figure(figsize=(max(7.0, 0.35 * width + 4.5), max(4.0, 0.32 * height + 1.5)))
    graph, curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(2.0, width / 6), 1.4]})
    scale = max(float(r.scores[:n].abs().max()) if n else 0.0, 1e-12)
    for k in range(n):
        (x1, y1), (x2, y2) = pos[int(r.edge_source[k])], pos[int(r.edge_target[k])]
        score = float(r.scores[k])
        graph.plot([x1, x2], [y1, y2], color="#c62828" if score > 0 else "#1565c0", alpha=0.75,
                   linewidth=0.5 + 4.0 * abs(score) / scale, zorder=1)
    used = set(r.edge_source[:n].tolist()) | set(r.edge_target[:n].tolist())
    for i in used:
        node = r.nodes[i]
        x, y = pos[i]
        label = _label(r, node)
        graph.text(x, y, label, ha="center", va="center", fontsize=6, zorder=2,
                   bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#555", "lw": 0.5})
    graph.set_yticks(range(height), ["embed", *(f"L{layer}" for layer in range(height - 2)), "logits"],
                     fontsize=6)
    graph.set_xticks([])
    graph.set_xlim(-1, width)
    graph.set_ylim(-0.6, height - 0.4)
    graph.set_ylabel("layer (bottom to top)", fontsize=8)
    graph.set_title(f"top {r.circuit_edges} edges ({r.method}); red helps {visible(r.target_token)!r}, blue "
                    "works against it", fontsize=8)
    sizes = list(r.curve_sizes)
    curve.plot(sizes, r.curve.tolist(), marker="o", color="#c62828", label="top-scored circuits")
    if r.random_curve is not None:
        mean, std = r.random_curve.tolist(), r.random_std.tolist()
        curve.plot(sizes, mean, marker="o", color="#777", label="random circuits (mean ± sd)")
        curve.fill_between(sizes, [m - s for m, s in zip(mean, std, strict=True)],
                           [m + s for m, s in zip(mean, std, strict=True)], color="#999", alpha=0.3)
    curve.axhline(1.0, color="#bbb", linestyle="--", linewidth=0.8)
    curve.axhline(0.0, color="#bbb", linewidth=0.8)
    curve.axvline(r.circuit_edges, color="#444", linestyle=":", linewidth=0.8)
    curve.set_xscale("log")
    curve.set_xlabel("edges kept (log scale)", fontsize=8)
    curve.set_ylabel("normalised faithfulness (1 = clean, 0 = ablated)", fontsize=8)
    curve.tick_params(labelsize=7)
    curve.legend(fontsize=7, loc="upper left")
    curve.set_title(f"{_pct(r.faithfulness)} recovered by the circuit", fontsize=8)
    fig.tight_layout()
    return fig
