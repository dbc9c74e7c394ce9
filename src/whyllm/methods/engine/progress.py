"""The one progress protocol of long methods.

A long method takes ``progress: Progress | None = None`` and calls ``progress(done, total)`` as it
advances, in units it chooses (rows of a sweep, integrated-gradients steps, generated tokens). The CLI
draws it as one progress bar (:func:`whyllm.cli._app.progress_bar`); the server reports it as the job's
progress. ``total`` may grow between calls (adaptive methods); ``done <= total`` always.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress", "report"]

Progress = Callable[[int, int], None]


def report(progress: Progress | None, done: int, total: int) -> None:
    """Call ``progress(done, total)`` if there is a callback."""
    if progress is not None:
        progress(done, total)
