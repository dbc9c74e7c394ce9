"""Views of attribution and evaluation results: the input as a heatmap, a ranked table, faithfulness.

Colours are relative: the unit with the largest absolute score gets full colour (red pushes the
target up, blue pushes it down); masked tokens (BOS, chat template) are dimmed.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from whyllm.render import dispatch
from whyllm.render.html import esc, heat_color, signed_bar, table
from whyllm.render.terminal import token_cell
from whyllm.render.text import visible
from whyllm.results.attribution import AttributionResult, EvaluationResult, Faithfulness, Unit

__all__ = [
    "by_magnitude", "deletion_svg", "heat_style", "method_name", "pieces", "plain_words", "position",
    "random_sentence", "random_words", "target_free",
]

_TOP = 10

# Readable method names (reports and the terminal); unknown names fall back to spaces for underscores.
_METHOD_NAMES = {
    "integrated_gradients": "integrated gradients", "input_x_gradient": "input × gradient",
    "saliency": "saliency (gradient norm)", "occlusion": "occlusion", "attention": "attention (last layer)",
    "attention_rollout": "attention rollout", "context_ablation": "context ablation",
}
# Methods whose scores do not depend on the target or foil: their views never say "why X rather than Y".
_TARGET_FREE = {"attention", "attention_rollout"}


def method_name(method: str) -> str:
    """Return a method's readable name (``"integrated_gradients"`` -> ``"integrated gradients"``)."""
    return _METHOD_NAMES.get(method, method.replace("_", " "))


def by_magnitude(units: tuple[Unit, ...] | list[Unit]) -> list[Unit]:
    """Units ranked by absolute score, strongest evidence first whatever its sign (ties: input order)."""
    return sorted(units, key=lambda u: (-abs(u.score), u.start))


def position(u: Unit) -> str:
    """Return where a unit sits in the input, ``"7"`` or ``"3-5"``: tells repeated tokens apart."""
    return str(u.start) if u.end - u.start <= 1 else f"{u.start}-{u.end - 1}"


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
    if target_free(r.method):  # the scores ignore the target: do not present them as its reasons
        return (f"where the model looks: {method_name(r.method)} by {r.granularity} "
                f"(independent of the target and foil)")
    what = f"{r.target!r}" + (f" rather than {r.foil!r}" if r.foil is not None else "")
    return (f"why {what}? {method_name(r.method)} by {r.granularity} "
            f"(f = {r.score:.3f}, baseline {r.baseline})")


def _warning(r: AttributionResult) -> str | None:
    """The completeness warning with its fix, when integrated gradients did not converge (error > 1%)."""
    if r.completeness_error is None or r.completeness_error <= 0.01:
        return None
    return (f"warning: the scores do not add up: completeness error {r.completeness_error:.1%} "
            f"with {r.steps} steps (above 1%). Rerun with more steps, e.g. --steps auto.")


def plain_words(r: AttributionResult) -> str | None:
    """Faithfulness in one sentence: what removing the top-ranked units does to the score ``f``."""
    f = r.faithfulness
    if f is None or len(f.deletion_fractions) < 2 or not r.units:
        return None
    n = len(r.units)
    count = max(1, round(f.deletion_fractions[1] * n))
    order = sorted(range(n), key=lambda k: (-r.units[k].score, k))  # the order faithfulness removes them in
    removed = ", ".join(repr(r.units[k].text) for k in order[:count])
    what = (f"log p({r.target!r}) - log p({r.foil!r})" if r.foil is not None else f"log p({r.target!r})")
    before, after = f.deletion_scores[0], f.deletion_scores[1]
    flips = r.foil is not None and before * after < 0
    lead = f"removing {removed} alone" if count == 1 else f"removing the top {count} units ({removed})"
    return (f"{lead} {'flips the answer' if flips else 'moves the score'}: f = {what} goes from "
            f"{before:.2f} to {after:.2f}; with every unit removed it is {f.empty_score:.2f}")


def target_free(method: str) -> bool:
    """Whether a method's scores ignore the target and foil (its views never say "why X rather than Y")."""
    return method in _TARGET_FREE


def random_words(r: AttributionResult) -> str | None:
    """The deletion curve against its random-order baseline, in one sentence (``None`` without one)."""
    return random_sentence(r.faithfulness, contrast=r.foil is not None)


def random_sentence(f: Faithfulness | None, contrast: bool) -> str | None:
    """:func:`random_words` from the faithfulness alone (``contrast``: f is a target − foil margin)."""
    if f is None or f.random_deletion_auc is None:
        return None
    what = "the margin" if contrast else "the target's log-probability"
    auc, rand = f.deletion_auc, f.random_deletion_auc
    verdict = "faster than" if auc < rand else "no faster than"
    return (f"deleting in the method's order lowers {what} {verdict} random order: deletion AUC {auc:.2f} vs "
            f"{rand:.2f} (mean of {f.random_orders} random orders; lower is faster)")


def _faith_lines(r: AttributionResult) -> list[str]:
    lines = [line for line in (plain_words(r), random_words(r)) if line]
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
    table = Table(title=f"strongest units by |score| (top {min(_TOP, len(r.units))} of {len(r.units)})",
                  title_justify="left")
    cols = [("rank", "right"), ("unit", "left"), ("position", "right"), ("score", "right"),
            ("against | for", "left")]
    for col, just in cols:
        table.add_column(col, justify=just)
    scale = max((abs(u.score) for u in r.units), default=0.0) or 1.0
    for i, u in enumerate(by_magnitude(r.units)[:_TOP]):
        width = round(8 * abs(u.score) / scale)
        signed = (Text(" " * (8 - width)) + Text("█" * width, style="blue") + Text("│" + " " * 8)
                  if u.score < 0 else Text(" " * 8 + "│") + Text("█" * width, style="red"))
        table.add_row(str(i + 1), token_cell(u.text), position(u), f"{u.score:+.4f}", signed)
    parts: list[RenderableType] = [Text(_title(r), style="bold"), heat,
                                   Text(f"scale: blue −{scale:.4g} … red +{scale:.4g} "
                                        "(red pushes towards the target, blue against)", style="dim"), table]
    warning = _warning(r)
    if warning:
        parts.append(Text(warning, style="bold yellow"))
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
    for col in ("rank", "method", "comprehensiveness ↑", "sufficiency ↓", "deletion AUC ↓ (random, beats)",
                "seconds"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in r.ranking:
        rnd, share = _versus_random(row)
        deletion = f"{row['deletion_auc']:.3f}" + ("" if rnd == "–" else f" ({rnd}, {share})")
        table.add_row(str(row["rank"]), method_name(row["method"]), f"{row['comprehensiveness']:.3f}",
                      f"{row['sufficiency']:.3f}", deletion, f"{row['seconds']:.2f}")
    return Group(table, Text(_RANDOM_NOTE, style="dim"))


_RANDOM_NOTE = ("random order AUC: the deletion AUC of deleting units in random orders, the AUC to beat; "
                "beats random: the share of prompts where the method's order lowers the margin faster")


def _versus_random(row: dict) -> tuple[str, str]:
    """The random-order AUC and the share of prompts beating it, as cells ("–" for old documents)."""
    rnd, share = row.get("random_deletion_auc"), row.get("beats_random")
    return ("–" if rnd is None else f"{rnd:.3f}", "–" if share is None else f"{share:.0%}")


def _heat_html(r: AttributionResult) -> str:
    out = []
    for text, rel, u in pieces(r):
        if rel is None:
            out.append(f'<span class="tok dim">{esc(visible(text))}</span>')
        else:
            out.append(f'<span class="tok" style="background:{heat_color(rel)}" '
                       f'title="{esc(f"{u.score:.4f} (tokens {u.start}-{u.end - 1})")}">{esc(text)}</span>')
    return "".join(out)


def deletion_svg(r: AttributionResult, width: int = 300, height: int = 150) -> str:
    """Return the deletion curve as inline SVG ("" when faithfulness was not computed).

    f as the top units are removed (solid blue) against the random-order baseline (dashed orange), or,
    in documents without one, the straight line between no unit and every unit removed (dashed grey).
    """
    f = r.faithfulness
    if f is None or len(f.deletion_scores) < 2:
        return ""
    xs, ys, rand = f.deletion_fractions, f.deletion_scores, f.random_deletion_scores
    lo, hi = min(*ys, *(rand or ()), 0.0), max(*ys, *(rand or ()), 0.0)
    span = (hi - lo) or 1.0
    left, bottom = 40, 22

    def x(v: float) -> float:
        return left + v * (width - left - 8)

    def y(v: float) -> float:
        return 8 + (hi - v) / span * (height - bottom - 8)

    def line(values: tuple[float, ...], style: str) -> str:
        points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, values, strict=True))
        return f'<polyline points="{points}" fill="none" {style}/>'

    label = f"deletion curve: f falls from {ys[0]:.2f} to {ys[-1]:.2f} as the top-ranked units are removed"
    if rand is None:
        reference = (f'<line x1="{x(0):.1f}" x2="{x(1):.1f}" y1="{y(ys[0]):.1f}" y2="{y(ys[-1]):.1f}" '
                     'stroke="#57606a" stroke-dasharray="4 3"/>')
        key = "dashed: the straight line between the ends; a faithful ranking falls below it early"
    else:
        reference = line(rand, 'stroke="#bc4c00" stroke-width="2" stroke-dasharray="5 3"')
        label += f"; deletion AUC {f.deletion_auc:.2f} against {f.random_deletion_auc:.2f} for random order"
        key = (f"orange dashed: units removed in random order (mean of {f.random_orders}); a faithful "
               "ranking falls below it")
    curve = line(ys, 'stroke="#0969da" stroke-width="2"')
    return (
        f'<svg role="img" aria-label="{esc(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="display:block;margin:.4em 0">'
        f'<line x1="{left}" x2="{width - 8}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#8c959f"/>'
        f"{reference}{curve}"
        f'<text x="2" y="{y(hi) + 4:.1f}" font-size="10">{hi:.1f}</text>'
        f'<text x="2" y="{y(lo):.1f}" font-size="10">{lo:.1f}</text>'
        f'<text x="{left}" y="{height - 6}" font-size="10">0% … share of units removed … 100%</text>'
        f"</svg><p class='legend'>f (nats) as units are removed · blue: in the method's order (top first) · "
        f"{key}</p>"
    )


@dispatch.html.register
def _(r: AttributionResult) -> str:
    scale = max((abs(u.score) for u in r.units), default=0.0) or 1.0
    rows = "".join(
        f"<tr><td>{i + 1}</td><td><span class='tok'>{esc(visible(u.text))}</span></td><td>{position(u)}</td>"
        f"<td>{u.score:+.4f}</td><td>{signed_bar(u.score / scale, 120)}</td></tr>"
        for i, u in enumerate(by_magnitude(r.units)[:_TOP])
    )
    notes = "".join(f"<p>{esc(line)}</p>" for line in _step_lines(r.step)) if r.step else ""
    faith = "".join(f"<p class='dim'>{esc(line)}</p>" for line in _faith_lines(r))
    warning = _warning(r)
    warn = f"<p class='warn'>{esc(warning)}</p>" if warning else ""
    return (
        f"<h2>{esc(_title(r))}</h2>{warn}<p>{_heat_html(r)}</p>"
        f"<p class='legend'>−{scale:.4g}<span class='ramp signed'></span>+{scale:.4g} · red: pushes the "
        "target up · blue: pushes it down · grey: not attributed (special or template tokens) · hover a unit "
        "for its score</p>"
        f"<table><tr><th>rank</th><th>unit</th><th>position</th><th>score</th><th>against | for</th></tr>"
        f"{rows}</table><p class='dim'>ranked by |score|: the strongest evidence either way first</p>"
        f"{notes}{faith}{deletion_svg(r)}"
    )


@dispatch.html.register
def _(r: EvaluationResult) -> str:
    rows = [[row["rank"], esc(method_name(row["method"])), f"{row['comprehensiveness']:.3f}",
             f"{row['sufficiency']:.3f}", f"{row['deletion_auc']:.3f}", *_versus_random(row),
             f"{row['seconds']:.2f}"]
            for row in r.ranking]
    headers = ["rank", "method", "comprehensiveness ↑", "sufficiency ↓", "deletion AUC ↓", "random order AUC",
               "beats random", "seconds"]
    title = f"<h2>Attribution methods ranked by faithfulness ({len(r.prompts)} prompts)</h2>"
    return title + table(headers, rows) + f"<p class='dim'>{esc(_RANDOM_NOTE)}</p>"
