"""Command-line interface: ``whyllm COMMAND --help``. Parsing and rendering only; no logic.

Hand-written commands (streaming, interactive or file-reading ones) live in :mod:`~whyllm.cli.core`,
:mod:`~whyllm.cli.explain`, :mod:`~whyllm.cli.internals` and :mod:`~whyllm.cli.serve`; every other
registered analysis gets a command made from its signature (:mod:`~whyllm.cli.generated`).
"""

from whyllm.cli import batch, core, explain, internals, serve
from whyllm.cli._app import app
from whyllm.cli.generated import add_missing_commands

add_missing_commands()

__all__ = ["app", "batch", "core", "explain", "internals", "serve"]
