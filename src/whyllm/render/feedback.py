"""Terminal and HTML views of the feedback results: stored items, a tuning run, a base-vs-tuned diff.

Registered on import (``whyllm.render.terminal`` imports this module on first use); views return
renderables / HTML strings and never print.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from whyllm.render import dispatch
from whyllm.render.html import esc
from whyllm.render.text import visible
from whyllm.results.feedback import DiffResult, FeedbackListResult, PromptDiff, TuneResult

__all__: list[str] = []


def _clip(text: str | None, n: int = 40) -> str:
    text = visible(text or "")
    return text if len(text) <= n else text[: n - 1] + "…"


@dispatch.terminal.register
def _(r: FeedbackListResult) -> RenderableType:
    table = Table(title=f"{len(r.items)} feedback item(s)", box=box.SIMPLE, title_justify="left")
    for col in ("id", "verdict", "prompt", "completion", "correction", "model"):
        table.add_column(col, overflow="fold")
    for it in r.items:
        style = "green" if it["verdict"] == "good" else "red"
        table.add_row(str(it["id"]), Text(it["verdict"], style=style), _clip(it["prompt"], 24),
                      _clip(it["completion"], 18), _clip(it.get("correction"), 18), _clip(it["model"], 14))
    return table


@dispatch.html.register
def _(r: FeedbackListResult) -> str:
    head = "".join(f"<th>{c}</th>" for c in ("id", "verdict", "prompt", "completion", "correction", "model"))
    rows = "".join(
        f"<tr><td>{it['id']}</td><td>{esc(it['verdict'])}</td><td>{esc(it['prompt'])}</td>"
        f"<td>{esc(it['completion'])}</td><td>{esc(it.get('correction') or '')}</td>"
        f"<td>{esc(it['model'])}</td></tr>"
        for it in r.items)
    return f"<h3>{len(r.items)} feedback item(s)</h3><table><tr>{head}</tr>{rows}</table>"


def _tune_lines(r: TuneResult) -> list[str]:
    first, last = (r.losses[0][1], r.losses[-1][1]) if r.losses else (float("nan"), float("nan"))
    return [
        f"{r.method} on {len(r.feedback_ids)} feedback item(s) ({r.n_rows} rows), base {r.base.get('name')}",
        f"{r.steps} steps, loss {first:.4f} → {last:.4f}, {r.step_seconds:.2f} s/step ({r.seconds:.1f} s)",
        f"adapter: {r.adapter_dir} ({len(r.checkpoints)} checkpoint(s))",
    ]


@dispatch.terminal.register
def _(r: TuneResult) -> RenderableType:
    return Group(*(Text(line) for line in _tune_lines(r)))


@dispatch.html.register
def _(r: TuneResult) -> str:
    return "<h3>Tuning run</h3>" + "".join(f"<p>{esc(line)}</p>" for line in _tune_lines(r))


def _shift(rows: tuple[dict, ...]) -> str:
    return ", ".join(f"{visible(x['token'])} {x['base_prob']:.3f}→{x['tuned_prob']:.3f}" for x in rows[:3])


def _prompt_lines(d: PromptDiff) -> list[str]:
    lines = [f"KL {d.kl:.4f}   top: {visible(d.base_top['token'])} → {visible(d.tuned_top['token'])}",
             f"gained: {_shift(d.gained)}", f"lost:   {_shift(d.lost)}"]
    if d.first_divergence:
        f = d.first_divergence
        lines.append(f"generations part at step {f['step']}: base {visible(str(f['base_token']))} / "
                     f"tuned {visible(str(f['tuned_token']))}")
    else:
        lines.append("generations agree")
    lines += [f"base:  {_clip(d.base_text, 70)}", f"tuned: {_clip(d.tuned_text, 70)}"]
    if d.layers:
        top = max(d.layers, key=lambda x: x["kl"])
        lines.append(f"layer KL peaks at {top['layer']} ({top['kl']:.4f})")
    if d.components:
        lines.append("components: " + ", ".join(f"{c['name']} {c['change']:+.3f}" for c in d.components[:4]))
    if d.feedback:
        lines.append("feedback: " + ", ".join(f"#{f['id']} {f['score']:+.2e}" for f in d.feedback[:5]))
    return lines


@dispatch.terminal.register
def _(r: DiffResult) -> RenderableType:
    parts: list[RenderableType] = [Text(f"{r.base_model} vs + adapter {r.adapter_dir}", style="bold")]
    for d in r.prompts:
        parts.append(Text(visible(d.prompt), style="bold cyan"))
        parts.extend(Text("  " + line) for line in _prompt_lines(d))
    s = r.summary
    parts.append(Text(f"moved (KL > {s['threshold']}): {len(s['moved'])} of {len(r.prompts)}; side effects: "
                      f"{len(s['side_effects'])}", style="bold"))
    if r.lora:
        parts.append(Text("largest LoRA changes: " + ", ".join(f"{x['module']} {x['norm']:.3f}"
                                                              for x in r.lora[:3])))
    return Group(*parts)


@dispatch.html.register
def _(r: DiffResult) -> str:
    body = "".join(f"<h4>{esc(visible(d.prompt))}</h4><ul>"
                   + "".join(f"<li>{esc(line)}</li>" for line in _prompt_lines(d)) + "</ul>"
                   for d in r.prompts)
    s = r.summary
    return (f"<h3>{esc(r.base_model)} vs + adapter</h3>{body}<p>moved: {len(s['moved'])} of "
            f"{len(r.prompts)}; side effects: {esc(', '.join(s['side_effects']) or 'none')}</p>")
