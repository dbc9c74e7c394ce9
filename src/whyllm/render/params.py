"""Terminal, HTML and PNG views of parameter attribution and training-data attribution.

Registered on import (``whyllm.render.terminal`` imports this module on first use). Signed scores are
red (raise the metric) / blue (lower it); scale-invariant groups are marked ``≈0 by construction``.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from whyllm.render import dispatch
from whyllm.render.html import bar, esc, heat_color
from whyllm.render.text import visible
from whyllm.results.params import InfluenceResult, ParamsResult, ParamUnit

__all__ = ["plot_influence", "plot_params"]

_GROUPS_SHOWN = 16


def _what(r: ParamsResult) -> str:
    if r.metric == "logit_diff":
        return f"logit({visible(r.target_token)}) − logit({visible(r.foil_token or '')})"
    return f"log p({visible(r.target_token)})"


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3g}"


def _style(value: float, scale: float) -> str:
    s = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    level = int(255 - 200 * abs(s))
    return f"black on rgb(255,{level},{level})" if s >= 0 else f"black on rgb({level},{level},255)"


def _check_line(r: ParamsResult) -> str:
    if not r.checked:
        return "not checked (check=False)"
    corr = "undefined" if r.correlation is None else f"{r.correlation:.4f}"
    spear = "" if r.rank_correlation is None else f", Spearman {r.rank_correlation:.4f}"
    miss = r.largest_miss or {}
    units = "" if r.unit_correlation is None else f"; zeroing top units: r = {r.unit_correlation:.3f}"
    return (f"check: rescale each group by 1−{r.epsilon:g}: predicted vs measured change r = {corr}{spear} "
            f"over {r.n_correlated} groups that moved the metric; largest miss {miss.get('name')} "
            f"({miss.get('share', 0):.1%} of the largest change){units}")


def _unit_table(title: str, units: tuple[ParamUnit, ...]) -> Table:
    table = Table("unit", "g·W", "predicted", "measured", box=box.SIMPLE_HEAD, title=title,
                  title_justify="left")
    scale = max([abs(u.score) for u in units] + [1e-12])
    for u in units[:8]:
        table.add_row(visible(u.label), Text(f"{u.score:+.4f}", style=_style(u.score, scale)),
                      _fmt(u.predicted_change), _fmt(u.measured_change))
    return table


@dispatch.terminal.register
def _(r: ParamsResult) -> RenderableType:
    groups = r.top(_GROUPS_SHOWN)
    scale = max([abs(g.score) for g in groups] + [1e-12])
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, just in [("group", "left"), ("g·W", "right"), ("|rows|", "right"), ("pred Δ", "right"),
                      ("real Δ", "right"), ("", "left")]:
        table.add_column(col, justify=just, no_wrap=True)
    for g in groups:
        note = "scale-invariant" if g.scale_invariant else ""
        table.add_row(g.name, Text(f"{g.score:+.4f}", style=_style(g.score, scale)), f"{g.abs_score:.3g}",
                      _fmt(g.predicted_change), _fmt(g.measured_change), Text(note, style="dim"))
    out: list[RenderableType] = [
        Text.assemble(("parameter attribution of ", "dim"), (_what(r), "bold cyan"), (" after ", "dim"),
                      (r.prompt, "bold"), (f"  (value {r.value:.4f})", "dim")),
        table,
        Text(f"{len(r.groups)} groups, the {len(groups)} with the largest |g·W| shown", style="dim"),
        Text(_check_line(r), style="dim"),
    ]
    out += [Text(n, style="yellow") for n in r.notes]
    for title, units in (("top weight rows", r.rows), ("top MLP neurons", r.neurons),
                         ("top attention heads", r.heads)):
        if units:
            out.append(_unit_table(title, units))
    return Group(*out)


def _unit_rows(units: tuple[ParamUnit, ...]) -> str:
    scale = max([abs(u.score) for u in units] + [1e-12])
    return "".join(
        f"<tr><td>{esc(visible(u.label))}</td><td style='background:{heat_color(u.score / scale)}'>"
        f"{u.score:+.4f}</td><td>{_fmt(u.predicted_change)}</td><td>{_fmt(u.measured_change)}</td></tr>"
        for u in units)


@dispatch.html.register
def _(r: ParamsResult) -> str:
    groups = r.top(40)
    scale = max([abs(g.score) for g in groups] + [1e-12])
    rows = "".join(
        f"<tr><td>{esc(g.name)}</td><td style='background:{heat_color(g.score / scale)}'>{g.score:+.4f}</td>"
        f"<td>{bar(abs(g.score) / scale, 120)}</td><td>{g.abs_score:.3g}</td><td>{_fmt(g.predicted_change)}"
        f"</td><td>{_fmt(g.measured_change)}</td>"
        f"<td class='dim'>{'scale-invariant' if g.scale_invariant else ''}</td></tr>" for g in groups)
    units = "".join(
        f"<h2>{esc(title)}</h2><table><tr><th>unit</th><th>g·W</th><th>predicted Δ</th><th>measured Δ</th>"
        f"</tr>{_unit_rows(u)}</table>"
        for title, u in (("Top weight rows", r.rows), ("Top MLP neurons", r.neurons),
                         ("Top attention heads", r.heads)) if u)
    notes = "".join(f"<p><b>Note:</b> {esc(n)}</p>" for n in r.notes)
    return (
        f"<h2>Parameter attribution of {esc(_what(r))} after <span class='prompt'>{esc(r.prompt)}</span></h2>"
        f"<p class='dim'>value {r.value:.4f}; {len(r.groups)} groups, the {len(groups)} largest shown</p>"
        "<table><tr><th>group</th><th>g·W</th><th></th><th>Σ|rows|</th><th>predicted Δ</th>"
        f"<th>measured Δ</th><th></th></tr>{rows}</table>"
        f"<p class='dim'>{esc(_check_line(r))}</p>{notes}{units}"
    )


# ---- influence -------------------------------------------------------------------------------------
def _verify_line(v: dict[str, Any] | None) -> str:
    if not v:
        return "not verified (run with --verify to retrain without the top examples)"
    verdict = "top-k removal hurts more than every random removal" if v.get("separated") else \
        "top-k removal does NOT hurt more than every random removal"
    randoms = ", ".join(f"{d:+.3f}" for d in v.get("random_drops", []))
    return (f"verify: log p fell {v['top_k_drop']:+.3f} without the top {v['k']} examples, "
            f"{v['random_drop']:+.3f} on average without {v['k']} random ones "
            f"(seeds {v['seeds']}: {randoms}); {verdict}")


def _example_table(title: str, examples) -> Table:
    table = Table("index", "score", "text", box=box.SIMPLE_HEAD, title=title, title_justify="left")
    scale = max([abs(e.score) for e in examples] + [1e-12])
    for e in examples:
        score = Text(f"{e.score:+.3g}", style=_style(e.score, scale))
        table.add_row(str(e.index), score, e.text.replace("\n", "↵")[:100])
    return table


@dispatch.terminal.register
def _(r: InfluenceResult) -> RenderableType:
    out: list[RenderableType] = [
        Text.assemble(("training examples behind ", "dim"), ("".join(r.target_tokens), "bold cyan"),
                      (" after ", "dim"), (r.prompt, "bold"),
                      (f"  (log p {r.log_prob:.3f}; TracIn over checkpoints {list(r.checkpoints)}, "
                       f"{r.n_examples} examples)", "dim")),
        _example_table("raised it most (proponents)", r.examples),
    ]
    if r.opponents:
        out.append(_example_table("lowered it most (opponents)", r.opponents))
    out.append(Text(_verify_line(r.verify), style="dim"))
    return Group(*out)


@dispatch.html.register
def _(r: InfluenceResult) -> str:
    def rows(examples) -> str:
        scale = max([abs(e.score) for e in examples] + [1e-12])
        return "".join(
            f"<tr><td>{e.index}</td><td style='background:{heat_color(e.score / scale)}'>{e.score:+.4g}</td>"
            f"<td><span class='tok'>{esc(visible(e.text))}</span></td></tr>" for e in examples)

    head = "<tr><th>index</th><th>score</th><th>text</th></tr>"
    opp = f"<h2>Lowered it most</h2><table>{head}{rows(r.opponents)}</table>" if r.opponents else ""
    return (
        f"<h2>Training examples behind {esc(''.join(r.target_tokens))} after "
        f"<span class='prompt'>{esc(r.prompt)}</span></h2>"
        f"<p class='dim'>log p {r.log_prob:.3f}; TracIn over checkpoints {esc(list(r.checkpoints))}; "
        f"{r.n_examples} examples; run {esc(r.run_dir)}</p>"
        f"<h2>Raised it most</h2><table>{head}{rows(r.examples)}</table>{opp}"
        f"<p class='dim'>{esc(_verify_line(r.verify))}</p>"
    )


# ---- PNG (from the JSON documents; matplotlib imported lazily by whyllm.render.plot) ----------------
def _barh(items: list[tuple[str, float]], title: str, xlabel: str):
    from whyllm.render.plot import _new, signed_rgb

    vmax = max([abs(v) for _, v in items] + [1e-12])
    fig, ax = _new(7, 0.3 * len(items) + 1.2)
    values = [v for _, v in items]
    ax.barh(range(len(items)), values, color=[signed_rgb(v / vmax) for v in values], edgecolor="#57606a",
            linewidth=0.4)
    ax.set_yticks(range(len(items)), [n for n, _ in items], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="#57606a", linewidth=0.8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def plot_params(doc: dict[str, Any]):
    """Bar chart of the groups with the largest ``|g·W|`` (scale-invariant ones marked)."""
    groups = sorted(doc["groups"], key=lambda g: -abs(g["score"]))[:20]
    items = [(g["name"] + (" (scale-inv.)" if g["scale_invariant"] else ""), g["score"]) for g in groups]
    corr, n_inv = doc.get("correlation"), len(doc.get("scale_invariant", []))
    check = f"; check r = {corr:.4f}" if corr is not None else ""
    inv = f"\n{n_inv} scale-invariant groups (score ≈ 0 by construction) are marked" if n_inv else ""
    return _barh(items, f"Parameter attribution of “{visible(doc['target_token'])}”{check}{inv}",
                 "gradient × weight (first-order drop if removed)")


def plot_influence(doc: dict[str, Any]):
    """Bar chart of the top proponents and opponents."""
    def label(e: dict[str, Any]) -> str:  # the end of an example is usually what tells examples apart
        text = e["text"].replace("\n", "↵")
        return f"#{e['index']} " + (text if len(text) <= 48 else "…" + text[-47:])

    items = [(label(e), e["score"]) for e in (*doc["examples"], *doc["opponents"])]
    return _barh(items, f"Training examples behind “{''.join(doc['target_tokens'])}” (TracIn)",
                 "influence on log p(target)")


dispatch.figure.register(ParamsResult)(lambda result: plot_params(result.to_dict()))
dispatch.figure.register(InfluenceResult)(lambda result: plot_influence(result.to_dict()))
