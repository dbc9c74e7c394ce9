"""``whyllm serve``: the local web explorer (see docs/server.md)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from whyllm.cli._app import Run, command, err_console, out_console
from whyllm.errors import InputError

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@command(outputs=False)
def serve(
    run: Run,
    host: Annotated[str, typer.Option(help="Address to bind (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    queue_size: Annotated[int, typer.Option("--queue-size", min=1, max=1024,
                                            help="Requests that may wait while one runs; more get 429.")] = 8,
    token: Annotated[str | None, typer.Option(envvar="WHYLLM_TOKEN", show_envvar=True,
                                              help="Access token (default: a new random one).")] = None,
    db: Annotated[Path | None, typer.Option(
        "--db", help="Feedback database of the app's thumbs and corrections (default: the cache's).")] = None,
    run_dir: Annotated[list[Path] | None, typer.Option(
        "--run", help="A training run (whyllm train output) to explore with emerge (repeat).")] = None,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", help="Extra Host header names to accept (besides localhost names).")] = None,
) -> None:
    """Explore the model in a browser: load it once and serve the explorer and its JSON API.

    Prints the URL to open; it carries the per-launch token that every request needs.
    """
    from whyllm.server.app import create_app
    from whyllm.server.run import run_app, url_of

    if token is not None and len(token) < 8:
        raise InputError(f"the token must have at least 8 characters, got {len(token)}; or leave it unset")
    hosts = list(allow_host or [])
    if host not in _LOOPBACK and not _is_wildcard(host):
        hosts.append(host)  # the user chose this address: requests to it name it in their Host header
    if host not in _LOOPBACK:
        err_console.print(f"[yellow]warning:[/yellow] binding {host} exposes the explorer beyond this "
                          "machine; requests still need the token", highlight=False)
    m = run.load()
    app = create_app(m, token=token, queue_size=queue_size, allowed_hosts=hosts, runs=run_dir or (),
                     feedback_db=db)
    out_console.print(f"whyllm explorer for {m.name}: open {url_of(host, port, app.state.token)}",
                      highlight=False, soft_wrap=True)
    err_console.print("Ctrl+C stops the server.", highlight=False)
    run_app(app, host=host, port=port)
