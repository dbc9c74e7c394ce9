"""Guards for a local ML server: the attacks on Jupyter, Ollama, Gradio and Ray dashboards, refused.

:class:`Guard` is a plain ASGI middleware in front of the whole app:

* **DNS rebinding**: a request whose ``Host`` header is not a local name (``localhost``,
  ``127.0.0.1``, ``::1``, or a host the user allowed when starting the server) gets 400.
* **Cross-origin writes**: a state-changing request (anything but GET/HEAD/OPTIONS) whose ``Origin``
  is not the server's own origin, or that the browser marks ``Sec-Fetch-Site: cross-site``, gets 403.
  No CORS headers are ever sent, so other sites cannot read any answer either.
* **Per-launch token**: every ``/api/`` request needs the token printed at launch, in the
  ``X-Whyllm-Token`` header or in the HttpOnly, SameSite=Strict cookie that the index page sets when
  opened with ``?token=...`` (missing: 401, wrong: 403).
* **Body size**: bodies over ``max_body`` bytes get 413 (by ``Content-Length`` or while streaming).
* **Headers**: a strict Content-Security-Policy (scripts and styles only from the server itself),
  ``nosniff``, no referrer (the token never leaks in a Referer), no framing, ``no-store`` for the API.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSP",
    "LOCAL_HOSTS",
    "REPORT_CSP",
    "TOKEN_HEADER",
    "Guard",
    "cookie_name",
    "given_token",
    "split_host",
    "token_matches",
]

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
TOKEN_HEADER = "x-whyllm-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def split_host(host: str) -> tuple[str, str | None]:
    """``"[::1]:8000"`` -> ``("::1", "8000")``; ``"localhost"`` -> ``("localhost", None)``."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else None
    if host.count(":") == 1:
        name, port = host.split(":")
        return name, port
    return host, None


def cookie_name(host: str) -> str:
    """Name of the token cookie for the server at ``host`` (cookies are shared across ports)."""
    return f"whyllm_token_{split_host(host)[1] or '80'}"


def given_token(headers: Headers) -> str | None:
    """Return the token a request carries: the ``X-Whyllm-Token`` header, else the cookie."""
    header = headers.get(TOKEN_HEADER)
    if header is not None:
        return header
    return cookie_parser(headers.get("cookie", "")).get(cookie_name(headers.get("host", "")))


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison."""
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


def _json(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": error}, status_code=status)


class Guard:
    """ASGI middleware enforcing the rules in this module's docstring."""

    def __init__(self, app: ASGIApp, *, token: str, allowed_hosts: Iterable[str] = (),
                 max_body: int = 64 * 1024, protected: str = "/api/"):
        self.app, self.token, self.max_body, self.protected = app, token, max_body, protected
        self.hosts = LOCAL_HOSTS | {h.lower().strip("[]") for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or pass on one ASGI call."""
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # no websocket routes: close without accepting
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        send = self._with_headers(scope, send)
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        name, _ = split_host(host)
        if name not in self.hosts:
            return _json(400, "BadHost", f"Host header {host!r} is not a local name; this server answers "
                         f"only {', '.join(sorted(self.hosts))} (a guard against DNS rebinding)")
        if scope["method"] not in SAFE_METHODS and not self._same_origin(headers, host):
            origin = headers.get("origin", "another site")
            return _json(403, "CrossOrigin", f"cross-origin request from {origin!r} refused: only pages "
                         "served by this server may send requests that change state")
        if scope["path"].startswith(self.protected):
            given = given_token(headers)
            if given is None:
                return _json(401, "MissingToken", "this API needs the launch token: send it in the "
                             "X-Whyllm-Token header, or open the URL printed by `whyllm serve`")
            if not token_matches(given, self.token):
                return _json(403, "BadToken", "wrong token: use the one printed by `whyllm serve` at launch")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return _json(413, "BodyTooLarge", f"request body of {length} bytes is over the limit of "
                         f"{self.max_body} bytes")
        return None

    @staticmethod
    def _same_origin(headers: Headers, host: str) -> bool:
        origin = headers.get("origin")
        if origin is None:  # not sent by a browser page (curl, scripts) or a same-origin navigation
            return headers.get("sec-fetch-site") not in ("cross-site", "same-site")
        return origin.lower() in (f"http://{host.lower()}", f"https://{host.lower()}")

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, f"request body is over the limit of {self.max_body} bytes")
            return message

        return limited

    def _with_headers(self, scope: Scope, send: Send) -> Send:
        api = scope["path"].startswith(self.protected)

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "content-security-policy" not in headers:
                    headers["content-security-policy"] = CSP
                for key, value in _HEADERS.items():
                    headers.setdefault(key, value)
                if api:
                    headers["cache-control"] = "no-store"
            await send(message)

        return wrapped
