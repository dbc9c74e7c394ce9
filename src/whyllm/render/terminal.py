"""Terminal views (rich renderables) of results. Returns values; never prints.

:func:`view` dispatches on the result type. Domain modules listed in ``_DOMAINS`` register their own
views with ``@view.register`` and are imported on first use.
"""

from __future__ import annotations

import importlib
from functools import singledispatch

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from whyllm.model.base import visible
from whyllm.results.generate import GenerationResult, SamplesResult, Step
from whyllm.results.predict import PredictResult

__all__ = [
    "LOW_PROB", "fmt_prob", "generation_text", "load_domains", "prob_style", "step_note", "step_text",
    "steps_table", "token_cell", "view",
]

LOW_PROB = 0.1  # picks below this probability are marked as unlikely

_DOMAINS = ("whyllm.render.attribution", "whyllm.render.internals", "whyllm.render.feedback")
_loaded = False


@singledispatch
def _view(result: object) -> RenderableType:
    return Text(repr(result))


def load_domains() -> None:
    """Import the domain view modules once, so their registrations exist."""
    global _loaded
    if not _loaded:
        for name in _DOMAINS:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as e:
                if e.name != name:
                    raise
        _loaded = True


def view(result: object) -> RenderableType:
    """Rich renderable for any whyllm result."""
    load_domains()
    return _view(result)


view.register = _view.register  # type: ignore[attr-defined]


def prob_style(p: float) -> str:
    """Colour for a probability: green likely, yellow plausible, red unlikely picks."""
    if p >= 0.5:
        return "green"
    if p >= LOW_PROB:
        return "yellow"
    return "bold red"


def fmt_prob(p: float) -> str:
    """Format a probability compactly: ``0.734``, ``0.002``, ``3.1e-05``."""
    return f"{p:.3f}" if p >= 0.001 or p == 0 else f"{p:.1e}"


def token_cell(text: str) -> Text:
    """Token text with whitespace made visible."""
    return Text(visible(text), style="cyan")


def step_text(step: Step) -> Text:
    """Colour a generated token by its probability (low-probability picks stand out)."""
    style = prob_style(step.prob)
    if step.rank > 1:
        style += " underline"
    return Text(step.token, style=style)


def step_note(step: Step) -> str:
    """Plain-text mark of an unlikely pick (p < ``LOW_PROB``), visible without colour."""
    return "unlikely" if step.prob < LOW_PROB else ""


def _short_prob(p: float) -> str:
    return f"{p:.2f}".removeprefix("0") if p >= 0.01 else f"{p:.0e}"


@_view.register
def _(r: PredictResult) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD)
    for col, just in [("rank", "right"), ("token", "left"), ("id", "right"), ("prob", "right"),
                      ("logprob", "right")]:
        table.add_column(col, justify=just)
    for c in r.top:
        table.add_row(str(c.rank), token_cell(c.token), str(c.id), Text(fmt_prob(c.prob), prob_style(c.prob)),
                      f"{c.logprob:.3f}")
    parts: list[RenderableType] = [
        Text.assemble(("next token after ", "dim"), (r.prompt, "bold")), table,
        Text(f"entropy: {r.entropy:.3f} nats", style="dim"),
    ]
    if r.target is not None:
        t = r.target
        parts.append(Text.assemble(
            "target ", (visible(t.text), "cyan"), f": prob {t.prob:.4g}, logprob {t.logprob:.3f}, ",
            f"rank of first token {t.rank}",
        ))
        if len(t.ids) > 1:
            per = Table("token", "logprob", "rank", title="per target token", title_justify="left",
                        box=box.SIMPLE_HEAD)
            for tok, lp, rk in zip(t.tokens, t.logprobs, t.ranks, strict=True):
                per.add_row(token_cell(tok), f"{lp:.3f}", str(rk))
            parts.append(per)
    return Group(*parts)


def generation_text(r: GenerationResult) -> Text:
    """Show the prompt in bold followed by the generated tokens coloured by probability."""
    text = Text.assemble((r.prompt, "bold"))
    for step in r.steps:
        text.append_text(step_text(step))
    return text


def steps_table(r: GenerationResult) -> Table:
    """One row per step: token, probability, rank, entropy, a plain note and the alternatives."""
    table = Table(box=box.SIMPLE_HEAD, caption="unlikely: p < 0.1 (red); rank > 1: not the model's top "
                  "choice (underlined)", caption_justify="left")
    table.add_column("#", justify="right")
    table.add_column("token", max_width=16, overflow="ellipsis", no_wrap=True)
    for col in ("prob", "rank", "entropy"):
        table.add_column(col, justify="right")
    table.add_column("note")
    table.add_column("alternatives (prob)", overflow="fold")
    for s in r.steps:
        alts = "  ".join(f"{visible(a.token)} {_short_prob(a.prob)}" for a in s.alternatives[:3])
        rank = Text(str(s.rank), "underline" if s.rank > 1 else "")
        table.add_row(str(s.index), token_cell(s.token), Text(fmt_prob(s.prob), prob_style(s.prob)), rank,
                      f"{s.entropy:.2f}", Text(step_note(s), "bold red"), alts)
    return table


@_view.register
def _(r: GenerationResult) -> RenderableType:
    settings = ", ".join(f"{k}={v}" for k, v in r.settings.items() if v is not None)
    footer = Text(f"stopped: {r.stop_reason}; {settings}", style="dim")
    return Group(generation_text(r), steps_table(r), footer)


@_view.register
def _(r: SamplesResult) -> RenderableType:
    root = Tree(Text.assemble((r.prompt, "bold"), r.tree["text"]))

    def add(parent: Tree, node: dict) -> None:
        for child in node["children"]:
            first = child["tokens"][0] if child["tokens"] else ""
            p = child["probs"][0] if child["probs"] else 1.0
            label = Text.assemble(
                (f"p={fmt_prob(p)} ", prob_style(p)),
                (f"({len(child['samples'])} of {len(r.samples)}) ", "magenta"),
                (visible(first), "bold underline"), child["text"][len(first):],
            )
            add(parent.add(label), child)

    add(root, r.tree)
    lines = [Text(f"{i}: ", style="dim") + Text(s.text) for i, s in enumerate(r.samples)]
    n_branch = len(r.branch_points())
    head = Text(f"{len(r.samples)} samples, {n_branch} branch point(s); p = model probability of the draw "
                "that starts each branch", style="bold")
    return Group(head, root, *lines)
