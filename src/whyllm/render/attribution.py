"""Views of attribution and evaluation results: the input as a heatmap, a ranked table, faithfulness.

Colours are relative: the unit with the largest absolute score gets full colour (red pushes the
target up, blue pushes it down); masked tokens (BOS, chat template) are dimmed.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from whyllm.render import dispatch
from whyllm.render.html import bar, esc, heat_color, table
from whyllm.render.terminal import token_cell
from whyllm.render.text import visible
from whyllm.results.attribution import AttributionResult, EvaluationResult, Unit

__all__ = ["heat_style", "pieces"]

_TOP = 10


def heat_style(score: float) -> str:
    """Rich background style for a relative score in [-1, 1] (red positive, blue negative)."""
    s = max(-1.0, min(1.0, score))
    fade = int(255 * (1 - abs(s)))
    colour = f"rgb(255,{fade},{fade})" if s >= 0 else f"rgb({fade},{fade},255)"
    return f"black on {colour}"


def pieces(r: AttributionResult) -> list[tuple[str, float | None, Unit | None]]:
    """The input in order as ``(text, relative score or None for masked tokens, unit)``."""
    scale = max((abs(u.score) for u in r.units), default=0.0) or 1.0
    by_start = {u.start: u for u in r.units}
    out, i = [], 0
    while i < len(r.input_tokens):
        u = by_start.get(i)
        if u is not None:
            out.append((u.text, u.score / scale, u))
            i = u.end
        else:
            out.append((r.input_tokens[i], None, None))
            i += 1
    return out


def _title(r: AttributionResult) -> str:
    what = f"{r.target!r}" + (f" rather than {r.foil!r}" if r.foil is not None else "")
    return f"why {what}? {r.method} by {r.granularity} (f = {r.score:.3f}, baseline {r.baseline})"


def _faith_lines(r: AttributionResult) -> list[str]:
    lines = []
    if r.steps is not None:
        err = f", completeness error {r.completeness_error:.2%}" if r.completeness_error is not None else ""
        lines.append(f"integrated gradients: {r.steps} steps{err}")
    f = r.faithfulness
    if f is not None:
        pairs = zip(f.fractions, f.comprehensiveness_at, strict=True)
        comp = ", ".join(f"{k:.0%}: {v:.3f}" for k, v in pairs)
        suff = ", ".join(f"{k:.0%}: {v:.3f}" for k, v in zip(f.fractions, f.sufficiency_at, strict=True))
        lines.append(f"comprehensiveness {f.comprehensiveness:.3f} ({comp}; higher is better)")
        lines.append(f"sufficiency {f.sufficiency:.3f} ({suff}; lower is better)")
        lines.append(f"deletion AUC {f.deletion_auc:.3f} (lower is better); "
                     f"f without any unit {f.empty_score:.3f} (removed = replaced by {f.replacement})")
    return lines


def _step_lines(step: dict) -> list[str]:
    ru = step["runner_up"]
    lines = [
        f"step {step['step']}: chose {step['token']!r} (model p={step['prob']:.3f}, sampled with "
        f"p={step['sample_prob']:.3f}; {step['kept']} token(s) kept by temperature={step['temperature']}, "
        f"top_k={step['top_k']}, top_p={step['top_p']})",
        f"runner-up {ru['token']!r} p={ru['prob']:.3f}" + (" (cut by the settings)" if ru["cut"] else ""),
    ]
    if step.get("cut_candidates"):
        cut = ", ".join(f"{c['token']!r} {c['prob']:.3f}" for c in step["cut_candidates"])
        lines.append(f"likeliest cut candidates: {cut}")
    return lines


@dispatch.terminal.register
def _(r: AttributionResult) -> RenderableType:
    heat = Text()
    for text, rel, _u in pieces(r):
        heat.append(visible(text) if rel is None else text, style="dim" if rel is None else heat_style(rel))
    table = Table(title=f"top units (of {len(r.units)})", title_justify="left")
    cols = [("rank", "right"), ("unit", "left"), ("tokens", "right"), ("score", "right"), ("", "left")]
    for col, just in cols:
        table.add_column(col, justify=just)
    scale = max((abs(u.score) for u in r.units), default=0.0) or 1.0
    for i, u in enumerate(r.ranked()[:_TOP]):
        width = round(12 * abs(u.score) / scale)
        table.add_row(str(i + 1), token_cell(u.text), f"{u.start}-{u.end - 1}", f"{u.score:.4f}",
                      Text("█" * width, style="red" if u.score >= 0 else "blue"))
    parts: list[RenderableType] = [Text(_title(r), style="bold"), heat, table]
    if r.matrix is not None and r.matrix_tokens is not None:
        per = Table("output token", "top inputs", title="per output token", title_justify="left")
        for j, tok in enumerate(r.matrix_tokens):
            top = r.matrix[j].abs().topk(min(3, r.matrix.shape[1])).indices.tolist()
            per.add_row(token_cell(tok), ", ".join(f"{visible(r.input_tokens[k])} {float(r.matrix[j, k]):.3f}"
                                                    for k in top))
        parts.append(per)
    if r.step:
        parts.extend(Text(line) for line in _step_lines(r.step))
    parts.extend(Text(line, style="dim") for line in _faith_lines(r))
    return Group(*parts)


@dispatch.terminal.register
def _(r: EvaluationResult) -> RenderableType:
    table = Table(title=f"attribution methods ranked by faithfulness over {len(r.prompts)} prompt(s)",
                  title_justify="left")
    for col in ("rank", "method", "comprehensiveness ↑", "sufficiency ↓", "deletion AUC ↓", "seconds"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in r.ranking:
        table.add_row(str(row["rank"]), row["method"], f"{row['comprehensiveness']:.3f}",
                      f"{row['sufficiency']:.3f}", f"{row['deletion_auc']:.3f}", f"{row['seconds']:.2f}")
    return table


def _heat_html(r: AttributionResult) -> str:
    out = []
    for text, rel, u in pieces(r):
        if rel is None:
            out.append(f'<span class="tok dim">{esc(visible(text))}</span>')
        else:
            out.append(f'<span class="tok" style="background:{heat_color(rel)}" '
                       f'title="{esc(f"{u.score:.4f} (tokens {u.start}-{u.end - 1})")}">{esc(text)}</span>')
    return "".join(out)


@dispatch.html.register
def _(r: AttributionResult) -> str:
    scale = max((abs(u.score) for u in r.units), default=0.0) or 1.0
    rows = "".join(
        f"<tr><td>{i + 1}</td><td><span class='tok'>{esc(visible(u.text))}</span></td><td>{u.score:.4f}</td>"
        f"<td>{bar(abs(u.score) / scale, 120)}</td></tr>"
        for i, u in enumerate(r.ranked()[:_TOP])
    )
    notes = "".join(f"<p>{esc(line)}</p>" for line in _step_lines(r.step)) if r.step else ""
    faith = "".join(f"<p class='dim'>{esc(line)}</p>" for line in _faith_lines(r))
    return (
        f"<h2>{esc(_title(r))}</h2><p>{_heat_html(r)}</p>"
        "<p class='legend'>red: pushes the target up · blue: pushes it down · grey: not attributed "
        "(special or template tokens) · hover a unit for its score</p>"
        f"<table><tr><th>rank</th><th>unit</th><th>score</th><th></th></tr>{rows}</table>{notes}{faith}"
    )


@dispatch.html.register
def _(r: EvaluationResult) -> str:
    rows = [[row["rank"], esc(row["method"]), f"{row['comprehensiveness']:.3f}", f"{row['sufficiency']:.3f}",
             f"{row['deletion_auc']:.3f}", f"{row['seconds']:.2f}"] for row in r.ranking]
    headers = ["rank", "method", "comprehensiveness ↑", "sufficiency ↓", "deletion AUC ↓", "seconds"]
    title = f"<h2>Attribution methods ranked by faithfulness ({len(r.prompts)} prompts)</h2>"
    return title + table(headers, rows)
