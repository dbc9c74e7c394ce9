"""The one progress protocol of long methods.

A long method takes ``progress: Progress | None = None`` and calls ``progress(done, total)`` as it
advances, in units it chooses (rows of a sweep, integrated-gradients steps, generated tokens, training
steps), optionally with a third argument: a mapping of figures to show beside the bar (training passes
``{"loss": ..., "tokens_per_s": ..., "flops": ...}``). The CLI draws it as one progress bar
(:func:`whyllm.cli._app.progress_bar`); the server reports it as the job's progress. ``total`` may grow
between calls (adaptive methods); ``done <= total`` always.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["Progress", "report"]

Progress = Callable[..., None]  # progress(done: int, total: int, stats: Mapping[str, float] | None = None)


def report(progress: Progress | None, done: int, total: int,
           stats: Mapping[str, float] | None = None) -> None:
    """Call ``progress(done, total)`` (with ``stats`` when given) if there is a callback."""
    if progress is None:
        return
    if stats is None:
        progress(done, total)
    else:
        progress(done, total, stats)
