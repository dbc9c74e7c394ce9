"""Terminal and HTML views of a batch run's summary (:class:`~whyllm.results.batch.BatchSummary`).

Registered on import like :mod:`whyllm.render.feedback`; views return values and never print.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from whyllm.render import dispatch
from whyllm.render.html import esc
from whyllm.results.batch import BatchSummary

__all__: list[str] = []


def _line(r: BatchSummary) -> str:
    return (f"{r.done} rows written ({r.errors} errors), {r.skipped} already done, {r.total} in all "
            f"({r.rows} input rows × {len(r.runs)} runs: {', '.join(r.runs)}); "
            f"{r.rows_per_second:.1f} rows/s over {r.seconds:.1f} s; {r.out}")


def _warnings(r: BatchSummary) -> list[str]:
    out = []
    if r.errors:
        out.append(f"warning: {r.errors} error rows (bad input rows, not retried on a rerun); "
                   f"list them with: whyllm report {r.out}")
    if r.remaining:
        out.append(f"warning: {r.remaining} rows are not written yet; rerun the same command to finish them")
    return out


@dispatch.terminal.register
def _(r: BatchSummary) -> RenderableType:
    return Group(Text(_line(r)), *(Text(w, style="bold yellow") for w in _warnings(r)))


@dispatch.html.register
def _(r: BatchSummary) -> str:
    warn = "".join(f"<p class='warn'>{esc(w)}</p>" for w in _warnings(r))
    return f"<h3>Batch run</h3>{warn}<p>{esc(_line(r))}</p>"
