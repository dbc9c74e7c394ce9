"""The embedded engine: one process, the model loaded once, units run in order, parts written as they end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from whyllm.batch.engine import Unit, run_unit
from whyllm.batch.io import write_part

__all__ = ["run_embedded"]


def run_embedded(
    model, units: list[Unit], out: str | Path, on_rows: Callable[[list[dict[str, Any]]], None] | None = None
) -> None:
    """Run ``units`` one after the other; each unit's rows are written as one part before the next starts.

    Args:
        model: the loaded model.
        units: from :func:`whyllm.batch.engine.plan`.
        out: the output folder.
        on_rows: called with each finished unit's rows (progress, counts).
    """
    for unit in units:
        rows = run_unit(model, unit)
        write_part(out, rows)
        if on_rows is not None:
            on_rows(rows)
