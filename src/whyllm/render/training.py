"""Terminal, HTML and PNG views of training runs (:class:`TrainResult`) and emergence (:class:`EmergeResult`).

Registered on import like :mod:`whyllm.render.internals`. Curves are drawn as sparklines in the
terminal, inline SVG in HTML (no scripts, nothing fetched) and matplotlib figures for PNG.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from whyllm.render import dispatch
from whyllm.render.html import esc
from whyllm.render.text import visible
from whyllm.results.training import EmergeResult, TrainResult

__all__ = ["sparkline", "svg_chart"]

_SPARK = "▁▂▃▄▅▆▇█"
_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d")


def sparkline(values: list[float], width: int = 60) -> str:
    """Values bucketed into ``width`` block characters, low to high."""
    if not values:
        return ""
    n = len(values)
    width = min(width, n)
    buckets = [values[i * n // width : (i + 1) * n // width] for i in range(width)]
    means = [sum(b) / len(b) for b in buckets]
    lo, hi = min(means), max(means)
    return "".join(_SPARK[int((m - lo) / (hi - lo) * 7) if hi > lo else 0] for m in means)


def _every(rows: list, limit: int) -> list:
    if len(rows) <= limit:
        return rows
    idx = sorted({round(i * (len(rows) - 1) / (limit - 1)) for i in range(limit)})
    return [rows[i] for i in idx]


def _si(x: float) -> str:
    return f"{x:.3g}" if x < 1e3 else f"{x:.2e}"


def _compute_line(r: TrainResult) -> str:
    f = r.frontier
    return (
        f"compute: {r.tokens:,} tokens x {r.n_params:,} parameters x 6 = {r.flops:.3g} FLOPs, "
        f"{r.frontier_share:.1e} of {f['name']}'s {f['flops']:.2g} FLOPs"
    )


# ---- train ---------------------------------------------------------------------------------------
@dispatch.terminal.register
def _(r: TrainResult) -> RenderableType:
    head = Text.assemble(
        ("trained ", "dim"),
        (f"{r.preset}", "bold"),
        f" ({r.family}, {r.n_params:,} parameters)",
        (" on ", "dim"),
        (r.task, "bold"),
        f": {r.completed_steps}/{r.steps} steps",
        (f", resumed at step {r.resumed_from}" if r.resumed_from else "", "dim"),
    )
    table = Table(box=box.SIMPLE_HEAD, title="held-out figures at checkpoints", title_justify="left")
    for col in ("step", "loss", "in-context loss", "accuracy", "in-context acc."):
        table.add_column(col, justify="right")
    for e in _every(list(r.evals), 12):
        table.add_row(
            str(e["step"]),
            f"{e['loss']:.3f}",
            f"{e['in_context_loss']:.3f}",
            f"{e['accuracy']:.3f}",
            f"{e['in_context_accuracy']:.3f}",
        )
    loss = r.train_loss
    curve = Text.assemble(
        ("training loss ", "dim"),
        (f"{loss[0]:.2f} " if loss else "", ""),
        (sparkline(list(loss)), "cyan"),
        (f" {loss[-1]:.2f}" if loss else "", ""),
    )
    speed = (
        f"{r.tokens_per_s:,.0f} tokens/s; wall {r.wall_s:.1f} s (training {r.train_s:.1f} s, checkpoints "
        f"{r.checkpoint_s:.2f} s = {100 * r.checkpoint_share:.1f}%, evaluation {r.eval_s:.2f} s)"
    )
    return Group(
        head,
        curve,
        table,
        Text(_compute_line(r)),
        Text(speed, style="dim"),
        Text(f"run directory: {r.run_dir} ({len(r.checkpoints)} checkpoints)", style="dim"),
    )


def _xy_svg(
    series: dict[str, list[tuple[float, float]]],
    *,
    width: int = 520,
    height: int = 180,
    title: str = "",
    marks: tuple[float, ...] = (),
    y_max: float | None = None,
) -> str:
    """Inline SVG line chart of several ``(x, y)`` series with a legend and optional vertical marks."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(0.0, min(p[1] for p in pts)), y_max if y_max is not None else max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    left, top, w, h = 40, 20, width - 150, height - 45

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return top + h - (min(y, y1) - y0) / (y1 - y0) * h

    parts = [
        f"<rect x='{left}' y='{top}' width='{w}' height='{h}' fill='none' stroke='#d0d7de'/>",
        f"<text x='{left}' y='13' font-size='12'>{esc(title)}</text>",
        f"<text x='{left - 4}' y='{top + 4}' font-size='10' text-anchor='end'>{y1:.3g}</text>",
        f"<text x='{left - 4}' y='{top + h}' font-size='10' text-anchor='end'>{y0:.3g}</text>",
        f"<text x='{left}' y='{top + h + 14}' font-size='10'>{x0:g}</text>",
        f"<text x='{left + w}' y='{top + h + 14}' font-size='10' text-anchor='end'>step {x1:g}</text>",
    ]
    for m in marks:
        parts.append(
            f"<line x1='{sx(m):.1f}' x2='{sx(m):.1f}' y1='{top}' y2='{top + h}' stroke='#e45756' "
            "stroke-dasharray='4 3'/>"
        )
    for k, (name, s) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{line}'/>")
        parts.append(
            f"<text x='{left + w + 8}' y='{top + 10 + 13 * k}' font-size='11' fill='{colour}'>"
            f"{esc(name)}</text>"
        )
    return f"<svg width='{width}' height='{height}' role='img' xmlns='http://www.w3.org/2000/svg'>{''.join(parts)}</svg>"


svg_chart = _xy_svg


@dispatch.html.register
def _(r: TrainResult) -> str:
    loss = list(r.train_loss)
    step = max(1, len(loss) // 400)
    curves = {
        "training loss": [(i + 1, loss[i]) for i in range(0, len(loss), step)],
        "held-out loss": [(e["step"], e["loss"]) for e in r.evals],
        "in-context loss": [(e["step"], e["in_context_loss"]) for e in r.evals],
    }
    rows = "".join(
        f"<tr><td>{e['step']}</td><td>{e['loss']:.3f}</td><td>{e['in_context_loss']:.3f}</td>"
        f"<td>{e['accuracy']:.3f}</td><td>{e['in_context_accuracy']:.3f}</td></tr>"
        for e in r.evals
    )
    return (
        f"<h2>Training {esc(r.preset)} ({esc(r.family)}, {r.n_params:,} parameters) on {esc(r.task)}</h2>"
        f"{_xy_svg(curves, title='loss (nats)')}"
        f"<p>{esc(_compute_line(r))}</p><p class='dim'>{r.tokens_per_s:,.0f} tokens/s · checkpoints "
        f"{100 * r.checkpoint_share:.1f}% of {r.wall_s:.1f} s · {r.completed_steps}/{r.steps} steps · "
        f"{esc(r.run_dir)}</p><div class='scroll'><table><tr><th>step</th><th>loss</th>"
        f"<th>in-context loss</th><th>accuracy</th><th>in-context accuracy</th></tr>{rows}</table></div>"
    )


# ---- emerge --------------------------------------------------------------------------------------
def _best(grid: list[list[float]]) -> tuple[int, int, float]:
    return max(((lay, h, v) for lay, row in enumerate(grid) for h, v in enumerate(row)), key=lambda t: t[2])


def _phase_text(p: dict[str, Any]) -> str:
    heads = (
        ", ".join(
            f"L{h['layer']}.H{h['head']} {h['role'].replace('_', '-')} +{h['rise']:.2f}"
            for h in p["heads"][:6]
        )
        or "no head score rose"
    )
    return (
        f"phase change at step {p['step']} (steps {p['from_step']}–{p['to_step']}): in-context loss "
        f"{p['before']:.2f} → {p['after']:.2f}; heads formed: {heads}"
    )


def _induction_text(r: EmergeResult) -> str:
    last = r.checkpoints[-1]["induction"]
    if r.induction_head is None:
        lay, h, v = _best(last)
        return f"no induction head (highest induction score {v:.2f}, L{lay}.H{h})"
    lay, h = r.induction_head
    return f"induction head: L{lay}.H{h} (induction score {last[lay][h]:.2f} at the last checkpoint)"


def _ablation_rows(r: EmergeResult, n: int = 8) -> list[dict[str, Any]]:
    return sorted(r.ablation, key=lambda a: a["in_context_accuracy"])[:n]


@dispatch.terminal.register
def _(r: EmergeResult) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in (
        "step",
        "loss",
        "in-ctx loss",
        f"p({visible(r.target_token)[:8]})",
        "top induction",
        "top prev-token",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for c in _every(list(r.checkpoints), 20):
        li, hi, vi = _best(c["induction"])
        lp, hp, vp = _best(c["previous_token"])
        table.add_row(
            str(c["step"]),
            f"{c['loss']:.3f}",
            f"{c['in_context_loss']:.3f}",
            f"{c['target_prob']:.3f}",
            f"L{li}.H{hi} {vi:.2f}",
            f"L{lp}.H{hp} {vp:.2f}",
        )
    out: list[RenderableType] = [
        Text.assemble(
            ("emergence of ", "dim"),
            (visible(r.target_token), "bold cyan"),
            (" after ", "dim"),
            (r.prompt if len(r.prompt) < 80 else "…" + r.prompt[-79:], "bold"),
        ),
        Text.assemble(("in-context loss ", "dim"), (sparkline(r.series("in_context_loss"), 40), "cyan")),
        table,
    ]
    out += [Text(_phase_text(p), style="bold") for p in r.phase_changes] or [
        Text("no phase change found", style="dim")
    ]
    out.append(Text(_induction_text(r)))
    for c in (r.checkpoints[0], r.checkpoints[-1]) if len(r.checkpoints) > 1 else r.checkpoints[-1:]:
        lens = ", ".join(f"{n} {p:.2f}" for n, p in zip(r.layer_names, c["lens"], strict=True))
        parts = ", ".join(f"{n} {c['components'][n]:+.2f}" for n in _top_parts([c], 4))
        out.append(
            Text(
                f"step {c['step']}: logit lens p(target) {lens}; largest direct contributions {parts}",
                style="dim",
            )
        )
    if r.ablation:
        base = r.checkpoints[-1]["in_context_accuracy"]
        abl = Table(
            "zeroed head",
            "in-context accuracy",
            box=box.SIMPLE_HEAD,
            title_justify="left",
            title=f"last checkpoint, one head zeroed at a time (intact: {base:.3f})",
        )
        for a in _ablation_rows(r):
            abl.add_row(f"L{a['layer']}.H{a['head']}", f"{a['in_context_accuracy']:.3f}")
        out.append(abl)
    for g in r.group_ablation:
        names = ", ".join(f"L{lay}.H{h}" for lay, h in g["heads"])
        out.append(
            Text(
                f"zeroing the {g['role'].replace('_', '-')} heads of step {g['step']} together ({names}): "
                f"in-context accuracy {g['in_context_accuracy']:.3f}"
            )
        )
    return Group(*out)


@dispatch.html.register
def _(r: EmergeResult) -> str:
    marks = tuple(p["step"] for p in r.phase_changes)
    losses = {
        k.replace("_", " "): list(zip(r.steps, r.series(k), strict=True)) for k in ("loss", "in_context_loss")
    }
    prob = {f"p({visible(r.target_token)})": list(zip(r.steps, r.series("target_prob"), strict=True))}
    n_layers = len(r.checkpoints[0]["induction"])
    ind, prev = {}, {}
    for lay in range(n_layers):
        for h in range(len(r.checkpoints[0]["induction"][lay])):
            ind[f"L{lay}.H{h}"] = [(c["step"], c["induction"][lay][h]) for c in r.checkpoints]
            prev[f"L{lay}.H{h}"] = [(c["step"], c["previous_token"][lay][h]) for c in r.checkpoints]
    top = dict(sorted(ind.items(), key=lambda kv: -kv[1][-1][1])[:8])
    topp = dict(sorted(prev.items(), key=lambda kv: -kv[1][-1][1])[:8])
    phases = "".join(f"<li>{esc(_phase_text(p))}</li>" for p in r.phase_changes) or "<li>none found</li>"
    base = r.checkpoints[-1]["in_context_accuracy"]
    abl = "".join(
        f"<tr><td>L{a['layer']}.H{a['head']}</td><td>{a['in_context_accuracy']:.3f}</td></tr>"
        for a in _ablation_rows(r, 16)
    )
    abl += "".join(
        f"<tr><td>{esc(g['role'].replace('_', '-'))} heads of step {g['step']}: "
        f"{esc(', '.join(f'L{a}.H{b}' for a, b in g['heads']))}</td>"
        f"<td>{g['in_context_accuracy']:.3f}</td></tr>"
        for g in r.group_ablation
    )
    parts = {
        n: [(c["step"], c["components"].get(n, 0.0)) for c in r.checkpoints]
        for n in _top_parts(list(r.checkpoints))
    }
    lens_head = "".join(f"<th>{esc(n)}</th>" for n in r.layer_names)
    lens_rows = "".join(
        f"<tr><td>{c['step']}</td>"
        + "".join(
            f"<td style='background:rgba(34,197,94,{0.1 + 0.8 * p:.2f})'>{p:.2f}</td>" for p in c["lens"]
        )
        + "</tr>"
        for c in r.checkpoints
    )
    return (
        f"<h2>Emergence of {esc(visible(r.target_token))} after <span class='prompt'>{esc(r.prompt[-200:])}"
        f"</span></h2>{_xy_svg(losses, title='held-out loss (nats)', marks=marks)}"
        f"{_xy_svg(prob, title='target probability', marks=marks, y_max=1.0)}"
        f"{_xy_svg(top, title='induction score per head', marks=marks, y_max=1.0)}"
        f"{_xy_svg(topp, title='previous-token score per head', marks=marks, y_max=1.0)}"
        f"{_xy_svg(parts, title='direct contribution to the target logit', marks=marks)}"
        f"<h2>Phase changes</h2><ul>{phases}</ul><p>{esc(_induction_text(r))}</p>"
        f"<h2>Logit lens: p(target) after each layer</h2><div class='scroll'><table><tr><th>step</th>"
        f"{lens_head}</tr>{lens_rows}</table></div>"
        + (
            f"<h2>Heads zeroed at the last checkpoint</h2><table><tr><th>head</th><th>in-context accuracy "
            f"(intact {base:.3f})</th></tr>{abl}</table>"
            if abl
            else ""
        )
    )


# ---- PNG -----------------------------------------------------------------------------------------
def _curves(ax, evals: list[dict[str, Any]], keys: tuple[str, str]) -> None:
    """Two evaluation curves (overall in blue, in-context in red) against the step."""
    for key, colour in zip(keys, ("#4c78a8", "#e45756"), strict=True):
        ax.plot([e["step"] for e in evals], [e[key] for e in evals], color=colour, marker="o", markersize=3,
                label=key.replace("_", " "))


def _train_png(doc: dict[str, Any]):
    from whyllm.render.plot import _new

    fig, axes = _new(11, 3.6, 1, 2)
    loss = doc["train_loss"]
    axes[0, 0].plot(range(1, len(loss) + 1), loss, color="#c0c7cf", linewidth=0.8, label="training")
    _curves(axes[0, 0], doc["evals"], ("loss", "in_context_loss"))
    axes[0, 0].set(xlabel="step", ylabel="loss (nats)", title=f"{doc['preset']} on {doc['task']}")
    axes[0, 0].legend(fontsize=8)
    _curves(axes[0, 1], doc["evals"], ("accuracy", "in_context_accuracy"))
    axes[0, 1].set(
        xlabel="step",
        ylabel="held-out accuracy",
        ylim=(0, 1),
        title=f"{doc['flops']:.3g} FLOPs = {doc['frontier_share']:.1e} × {doc['frontier']['name']}",
    )
    axes[0, 1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _emerge_png(doc: dict[str, Any]):
    from whyllm.render.plot import _new

    fig, axes = _new(11, 10.5, 3, 2)
    cks, steps = doc["checkpoints"], [c["step"] for c in doc["checkpoints"]]
    ax = axes[0, 0]
    for key, colour in (("loss", "#4c78a8"), ("in_context_loss", "#e45756")):
        ax.plot(
            steps, [c[key] for c in cks], color=colour, marker="o", markersize=3, label=key.replace("_", " ")
        )
    ax.set(xlabel="step", ylabel="held-out loss (nats)", title="loss per checkpoint")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    ax.plot(steps, [c["target_prob"] for c in cks], color="#54a24b", marker="o", markersize=3)
    ax.set(
        xlabel="step",
        ylabel="probability",
        ylim=(0, 1),
        title=f"p({visible(doc['target_token'])}) after the prompt",
    )
    for ax, key, title in (
        (axes[1, 0], "induction_score", "induction score"),
        (axes[1, 1], "previous_token_score", "previous-token score"),
    ):
        heads = {(h["layer"], h["head"]) for h in cks[0]["heads"]}
        for k, (lay, hd) in enumerate(sorted(heads)):
            ys = [next(h[key] for h in c["heads"] if (h["layer"], h["head"]) == (lay, hd)) for c in cks]
            ax.plot(steps, ys, color=_COLOURS[k % len(_COLOURS)], linewidth=1, label=f"L{lay}.H{hd}")
        ax.set(xlabel="step", ylabel=title, ylim=(0, 1), title=f"{title} per head")
        if len(heads) <= 16:
            ax.legend(fontsize=6, ncol=2)
    ax = axes[2, 1]
    for k, name in enumerate(_top_parts(cks)):
        ax.plot(
            steps,
            [c["components"].get(name, 0.0) for c in cks],
            color=_COLOURS[k % len(_COLOURS)],
            linewidth=1.2,
            label=name,
        )
    ax.axhline(0, color="#57606a", linewidth=0.6)
    ax.set(xlabel="step", ylabel="direct contribution to the logit", title="component contributions")
    ax.legend(fontsize=6, ncol=2)
    for ax in [*axes[:2].flat, axes[2, 1]]:
        for p in doc["phase_changes"]:
            ax.axvspan(p["from_step"], p["to_step"], color="#e45756", alpha=0.12)
    _lens_heatmap(axes[2, 0], doc)
    fig.tight_layout()
    return fig


def _top_parts(cks: list[dict[str, Any]], n: int = 6) -> list[str]:
    """Component names with the largest direct contribution at the last checkpoint."""
    last = cks[-1]["components"]
    return sorted(last, key=lambda k: -abs(last[k]))[:n]


def _lens_heatmap(ax, doc: dict[str, Any]) -> None:
    import numpy as np

    from whyllm.render.plot import prob_cmap, prob_norm

    cks = doc["checkpoints"]
    grid = np.array([c["lens"] for c in cks]).T  # (layer, checkpoint)
    ax.imshow(
        grid,
        aspect="auto",
        cmap=prob_cmap(),
        norm=prob_norm(),
        interpolation="nearest",
        origin="lower",
    )
    ticks = list(range(0, len(cks), max(1, len(cks) // 8)))
    ax.set_xticks(ticks, [str(cks[i]["step"]) for i in ticks], fontsize=7)
    ax.set_yticks(range(len(doc["layer_names"])), doc["layer_names"], fontsize=7)
    ax.set(xlabel="step", title=f"logit lens: p({visible(doc['target_token'])}) after each layer")


dispatch.figure.register(TrainResult)(lambda result: _train_png(result.to_dict()))
dispatch.figure.register(EmergeResult)(lambda result: _emerge_png(result.to_dict()))
