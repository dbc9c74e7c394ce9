"""Run the app with uvicorn: blocking (the CLI) or in a background thread (notebooks, tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from whyllm.model.base import Model

__all__ = ["run_app", "running", "serve", "url_of"]


def url_of(host: str, port: int, token: str) -> str:
    """Return the address to open: ``http://host:port/?token=...`` (IPv6 hosts in brackets)."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def _server(app: Any, host: str, port: int):
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def run_app(app: Any, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` until interrupted (Ctrl+C)."""
    _server(app, host, port).run()


def serve(model: Model, *, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve the explorer for ``model`` until interrupted (options go to :func:`create_app`)."""
    from whyllm.server.app import create_app

    run_app(create_app(model, **options), host=host, port=port)


@contextmanager
def running(app: Model | Any, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0,
            **options: Any) -> Iterator[str]:
    """Serve a model (or an app from :func:`create_app`) in a background thread; yield its URL.

    The URL carries the token. ``port=0`` picks a free port. Options go to :func:`create_app`. The
    server stops when the block ends.
    """
    from whyllm.server.app import create_app

    if isinstance(app, Model):
        app = create_app(app, **options)
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name="whyllm-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the whyllm server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield url_of(host, bound, app.state.token)
    finally:
        server.should_exit = True
        thread.join(timeout)
