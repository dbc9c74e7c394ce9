"""HTML views of results: fragments for notebooks, self-contained pages for reports.

Everything is inline (CSS, no scripts from anywhere, no fonts to fetch) so a report opens offline.
Every piece of model or user text goes through :func:`esc`. Views register on
:func:`whyllm.render.dispatch.html`; :func:`fragment` and :func:`page` wrap them.
"""

from __future__ import annotations

import html

from whyllm._version import __version__
from whyllm.render import dispatch
from whyllm.render.text import LOW_PROB, prob_log_rgba, signed_rgba, visible
from whyllm.results.generate import GenerationResult, SamplesResult
from whyllm.results.predict import PredictResult

__all__ = ["CSS", "PROB_LEGEND", "bar", "esc", "fragment", "heat_color", "page", "signed_bar"]

CSS = """
.whyllm{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;font-size:14px;color:#1f2328;
max-width:1100px}
.whyllm h2{font-size:17px;margin:.6em 0 .3em}.whyllm .dim{color:#57606a}
.whyllm table{border-collapse:collapse;margin:.4em 0}
.whyllm td,.whyllm th{padding:2px 8px;text-align:left;border-bottom:1px solid #eaeef2}
.whyllm .tok{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre;border-radius:3px;
padding:0 1px}
.whyllm .bar{display:inline-block;height:12px;background:#4c78a8;vertical-align:middle}
.whyllm .prompt{font-weight:600}.whyllm .scroll{max-height:480px;overflow:auto}
.whyllm .legend{font-size:12px;color:#57606a}
.whyllm .sbar{display:inline-flex;width:var(--w);vertical-align:middle}
.whyllm .sbar>span{width:50%;display:flex}
.whyllm .sbar>span:first-child{justify-content:flex-end;border-right:1px solid #8c959f}
.whyllm .sbar i{display:inline-block;height:12px}.whyllm .sbar i.neg{background:#2563eb}
.whyllm .sbar i.pos{background:#dc2626}
.whyllm .warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;color:#1f2328}
.whyllm ul.tree{list-style:none;padding-left:1.2em;border-left:1px dashed #ccc}
.whyllm .ramp{display:inline-block;width:160px;height:10px;vertical-align:middle;border:1px solid #d8dee4;
margin:0 6px}
.whyllm .ramp.prob{background:linear-gradient(to right,rgba(45,164,78,.05),rgba(45,164,78,.6))}
.whyllm .ramp.signed{background:linear-gradient(to right,#2563eb,rgba(37,99,235,0) 50%,
rgba(220,38,38,0) 50%,#dc2626)}
.whyllm .ramp.attn{background:linear-gradient(to right,rgba(91,33,182,0),#5b21b6)}
"""
PAGE_CSS = """
body{margin:0;background:#f6f8fa}.report{max-width:1140px;margin:0 auto;padding:16px 20px;background:#fff;
min-height:100vh;border-left:1px solid #d8dee4;border-right:1px solid #d8dee4}
.report header{display:flex;gap:12px;align-items:baseline;border-bottom:1px solid #d8dee4;padding-bottom:8px;
font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#57606a;font-size:13px}
.report header strong{color:#1f2328;font-size:17px}
.report footer{margin-top:18px;border-top:1px solid #d8dee4;padding-top:8px;font:12px system-ui,sans-serif;
color:#57606a}
"""


PROB_LEGEND = "probability (log scale): 0.01%<span class='ramp prob'></span>100%"


def esc(text: object) -> str:
    """HTML-escape any text (quotes included)."""
    return html.escape(str(text), quote=True)


def heat_color(score: float) -> str:
    """Diverging colour for a score in [-1, 1]: red positive, blue negative, white zero."""
    return "rgba({},{},{},{:.3f})".format(*signed_rgba(score))


def bar(p: float, width: int = 200) -> str:
    """Return a horizontal bar of ``p`` (0..1) times ``width`` pixels."""
    return f'<span class="bar" style="width:{max(1, round(p * width))}px"></span>'


def signed_bar(v: float, width: int = 120) -> str:
    """A bar for a signed value in [-1, 1] around a centre line: blue to the left, red to the right."""
    w = max(1, round(min(1.0, abs(v)) * width / 2))
    cls = "neg" if v < 0 else "pos"
    bar_html = f'<i class="{cls}" style="width:{w}px"></i>'
    left, right = (bar_html, "") if v < 0 else ("", bar_html)
    return (f'<span class="sbar" style="--w:{width}px" title="{v:+.3f} of the largest">'
            f"<span>{left}</span><span>{right}</span></span>")


def prob_color(p: float) -> str:
    """CSS colour of a probability on the log scale (:func:`whyllm.render.text.prob_log_rgba`)."""
    return "rgba({},{},{},{:.3f})".format(*prob_log_rgba(p))


def fragment(result: object) -> str:
    """Return the HTML fragment (a ``div.whyllm`` with its own scoped CSS) for a result, as in notebooks."""
    return f'<div class="whyllm"><style>{CSS}</style>{dispatch.html(result)}</div>'


def page(result: object, title: str | None = None) -> str:
    """Return a self-contained HTML document for a result: inline CSS, no scripts, nothing fetched."""
    kind = getattr(result, "kind", type(result).__name__)
    name = title or f"whyllm · {kind}"
    model = (getattr(result, "meta", None) or {}).get("model", "")
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" "
        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(name)}</title><style>{CSS}{PAGE_CSS}</style></head><body><div class=\"report\">"
        f"<header><strong>whyllm</strong><span>{esc(kind)} report</span><span>{esc(model)}</span></header>"
        f"<div class=\"whyllm\">{dispatch.html(result)}</div>"
        "<footer>Whitespace in tokens is shown as ␣ (space), ↵ (newline), ⇥ (tab). Written by whyllm "
        f"{esc(__version__)}; this file is self-contained and opens offline.</footer></div></body></html>"
    )


def table(headers: list[str], rows: list[list[object]]) -> str:
    """An HTML table; headers are escaped, cells are HTML already (escape text cells with :func:`esc`)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def tok(text: str, style: str = "", title: str = "") -> str:
    """A token as an HTML span, whitespace made visible."""
    return f'<span class="tok" style="{style}" title="{esc(title)}">{esc(visible(text))}</span>'


@dispatch.html.register
def _(r: PredictResult) -> str:
    rows = [[c.rank, tok(c.token), c.id, f"{bar(c.prob)} {c.prob:.4f}", f"{c.logprob:.3f}"] for c in r.top]
    target = ""
    if r.target is not None:
        t = r.target
        target = (f"<p>target {tok(t.text)}: prob {t.prob:.4g}, logprob {t.logprob:.3f}, "
                  f"rank of first token {t.rank}</p>")
    return (
        f"<h2>Next token after <span class='prompt'>{esc(r.prompt)}</span></h2>"
        + table(["rank", "token", "id", "probability", "logprob"], rows)
        + f"<p class='dim'>entropy {r.entropy:.3f} nats · model {esc(r.meta.get('model', ''))}</p>{target}"
    )


@dispatch.html.register
def _(r: GenerationResult) -> str:
    toks = "".join(
        tok(s.token, f"background:{prob_color(s.prob)}" + (";text-decoration:underline wavy #cf222e"
                                                           if s.prob < LOW_PROB else ""),
             f"p={s.prob:.3f} rank={s.rank} | "
             + ", ".join(f"{a.token!r} {a.prob:.3f}" for a in s.alternatives))
        for s in r.steps
    )
    return (
        f"<h2>Generation</h2><p><span class='prompt'>{esc(r.prompt)}</span>{toks}</p>"
        f"<p class='legend'>{PROB_LEGEND} · red wavy underline: sampled although under 10% likely "
        "(hover a token for its alternatives)</p>"
        f"<p class='dim'>stopped: {esc(r.stop_reason)} · {esc(r.settings)}</p>"
    )


def _tree(node: dict) -> str:
    items = "".join(
        f"<li><b>p={c['probs'][0]:.3f}</b> ({len(c['samples'])}) {tok(c['text'])}{_tree(c)}</li>"
        for c in node["children"]
    )
    return f"<ul class='tree'>{items}</ul>" if items else ""


@dispatch.html.register
def _(r: SamplesResult) -> str:
    return (
        f"<h2>{len(r.samples)} samples: where they diverge</h2>"
        f"<p><span class='prompt'>{esc(r.prompt)}</span>{tok(r.tree['text'])}</p>{_tree(r.tree)}"
    )

