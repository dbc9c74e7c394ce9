"""``whyllm serve``: a local web explorer and JSON API for one loaded model (needs fastapi, uvicorn).

Use :func:`create_app` for an ASGI app, :func:`serve` to run it (blocking), or :func:`running` to run it
in a background thread (notebooks, tests)::

    with whyllm.server.running(model) as url:
        print(url)   # open it in a browser; the token is in the URL
"""

from whyllm.server.app import create_app
from whyllm.server.run import running, serve

__all__ = ["create_app", "running", "serve"]
