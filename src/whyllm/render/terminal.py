"""Terminal views (rich renderables) of results. Returns values; never prints.

:func:`view` dispatches on the result type. Domain modules listed in ``_DOMAINS`` register their own
views with ``@view.register`` and are imported on first use.
"""

from __future__ import annotations

import importlib
from functools import singledispatch

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from whyllm.model.base import visible
from whyllm.results.generate import GenerationResult, SamplesResult, Step
from whyllm.results.predict import PredictResult

__all__ = ["load_domains", "prob_style", "step_text", "token_cell", "view"]

_DOMAINS = ("whyllm.render.attribution", "whyllm.render.internals")
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
    if p >= 0.1:
        return "yellow"
    return "bold red"


def token_cell(text: str) -> Text:
    """Token text with whitespace made visible."""
    return Text(visible(text), style="cyan")


def step_text(step: Step) -> Text:
    """A generated token coloured by its probability (low-probability picks stand out)."""
    style = prob_style(step.prob)
    if step.rank > 1:
        style += " underline"
    return Text(step.token, style=style)


@_view.register
def _(r: PredictResult) -> RenderableType:
    table = Table(title=f"next token after {r.prompt!r}", title_justify="left")
    for col, just in [("rank", "right"), ("token", "left"), ("id", "right"), ("prob", "right"),
                      ("logprob", "right")]:
        table.add_column(col, justify=just)
    for c in r.top:
        table.add_row(str(c.rank), token_cell(c.token), str(c.id), Text(f"{c.prob:.4f}", prob_style(c.prob)),
                      f"{c.logprob:.3f}")
    parts: list[RenderableType] = [table, Text(f"entropy: {r.entropy:.3f} nats", style="dim")]
    if r.target is not None:
        t = r.target
        parts.append(Text.assemble(
            "target ", (visible(t.text), "cyan"), f": prob {t.prob:.4g}, logprob {t.logprob:.3f}, ",
            f"rank of first token {t.rank}",
        ))
        if len(t.ids) > 1:
            per = Table("token", "logprob", "rank", title="per target token", title_justify="left")
            for tok, lp, rk in zip(t.tokens, t.logprobs, t.ranks, strict=True):
                per.add_row(token_cell(tok), f"{lp:.3f}", str(rk))
            parts.append(per)
    return Group(*parts)


@_view.register
def _(r: GenerationResult) -> RenderableType:
    text = Text.assemble((r.prompt, "bold"))
    for step in r.steps:
        text.append_text(step_text(step))
    table = Table(title="steps (red/underlined: unlikely or not the top choice)", title_justify="left")
    for col in ("#", "token", "prob", "rank", "entropy", "alternatives"):
        table.add_column(col)
    for s in r.steps:
        alts = ", ".join(f"{visible(a.token)} {a.prob:.2f}" for a in s.alternatives[:4])
        table.add_row(str(s.index), token_cell(s.token), Text(f"{s.prob:.3f}", prob_style(s.prob)),
                      str(s.rank), f"{s.entropy:.2f}", alts)
    settings = ", ".join(f"{k}={v}" for k, v in r.settings.items() if v is not None)
    return Group(text, table, Text(f"stopped: {r.stop_reason}; {settings}", style="dim"))


@_view.register
def _(r: SamplesResult) -> RenderableType:
    root = Tree(Text.assemble((r.prompt, "bold"), (r.tree["text"], "")))

    def add(parent: Tree, node: dict) -> None:
        for child in node["children"]:
            label = Text.assemble(
                (f"[p={child['probs'][0]:.3f}, {len(child['samples'])} sample(s)] ", "magenta"),
                (visible(child["tokens"][0]) if child["tokens"] else "", "bold"),
                child["text"][len(child["tokens"][0]):] if child["tokens"] else "",
            )
            add(parent.add(label), child)

    add(root, r.tree)
    lines = [Text(f"{i}: ", style="dim") + Text(s.text) for i, s in enumerate(r.samples)]
    n_branch = len(r.branch_points())
    return Group(Text(f"{len(r.samples)} samples, {n_branch} branch point(s)", style="bold"), root, *lines)
