"""Command-line interface: ``whyllm COMMAND --help``. Parsing and rendering only; no logic.

Hand-written commands (streaming, interactive, file- or run-directory-reading ones) live in
:mod:`~whyllm.cli.core`, :mod:`~whyllm.cli.explain`, :mod:`~whyllm.cli.internals`, :mod:`~whyllm.cli.serve`,
:mod:`~whyllm.cli.training` and :mod:`~whyllm.cli.params`; every other registered analysis gets a command
made from its signature (:mod:`~whyllm.cli.generated`).
"""

from whyllm.cli import core, explain, internals, params, serve, training
from whyllm.cli._app import app
from whyllm.cli.generated import add_missing_commands

add_missing_commands()

__all__ = ["app", "core", "explain", "internals", "params", "serve", "training"]
