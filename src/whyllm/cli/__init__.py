"""Command-line interface: ``whyllm COMMAND --help``. Parsing and rendering only; no logic.

Hand-written commands (streaming, interactive, file- or run-directory-reading ones) live in the
modules imported here; every other registered analysis gets a command made from its signature
(:mod:`~whyllm.cli.generated`).
"""

from whyllm.cli import batch, circuits, core, explain, feedback, internals, params, serve, training
from whyllm.cli._app import app
from whyllm.cli.generated import add_missing_commands

add_missing_commands()

__all__ = [
    "app", "batch", "circuits", "core", "explain", "feedback", "internals", "params", "serve", "training",
]
