"""What a terminal view prints, as plain text (80 columns, no colour)."""

from __future__ import annotations

import io

from rich.console import Console


def plain_text(renderable: object) -> str:
    """Print ``renderable`` (a result or a rich renderable) on an 80-column console without colour."""
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(renderable)
    return out.getvalue()
