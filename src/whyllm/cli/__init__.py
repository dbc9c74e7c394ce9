"""Command-line interface: ``whyllm COMMAND --help``. Parsing and rendering only; no logic."""

from whyllm.cli import core  # noqa: F401  (registers commands)
from whyllm.cli._app import app

for _name in ("explain", "internals", "serve", "feedback"):
    try:
        __import__(f"whyllm.cli.{_name}")
    except ModuleNotFoundError as _e:
        if _e.name != f"whyllm.cli.{_name}":
            raise

__all__ = ["app"]
