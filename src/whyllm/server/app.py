"""The web app: the explorer page and a JSON API that mirrors the CLI. No analysis logic here.

``POST /api/<command>`` takes the command's parameters (see :mod:`whyllm.server.schemas`) and answers
the same JSON document as ``whyllm <command> --json`` (``?format=html`` answers the self-contained
HTML report instead). There is an endpoint for every analysis of :data:`whyllm.methods.registry.ANALYSES`
(its request schema from :mod:`whyllm.server.schemas`, or made from its signature); analyses run one at a
time on the :class:`~whyllm.server.worker.Worker`; a client that disconnects cancels its job.
"""

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from whyllm._version import __version__
from whyllm.errors import WhyllmError
from whyllm.feedback import add_feedback, export_feedback, import_feedback, list_feedback, remove_feedback
from whyllm.feedback.diff import diff
from whyllm.methods.attribution.registry import METHODS
from whyllm.methods.registry import ANALYSES
from whyllm.model.adapters import AdaptedModel
from whyllm.model.base import Model
from whyllm.results.base import json_safe
from whyllm.server import schemas
from whyllm.server.security import REPORT_CSP, Guard, cookie_name, given_token, token_matches
from whyllm.server.worker import Busy, Cancelled, Job, Worker
from whyllm.training import checkpoints
from whyllm.training.emerge import emerge

__all__ = ["ENDPOINTS", "create_app", "endpoints"]

log = logging.getLogger(__name__)

STATIC = files("whyllm.server") / "static"



def endpoints() -> dict[str, tuple[type[schemas.ApiRequest], str]]:
    """``POST /api/<name>`` -> (request schema, summary), one per endpoint the registry names."""
    table: dict[str, tuple[type[schemas.ApiRequest], str]] = {}
    for entry in ANALYSES.values():
        name = entry.endpoint_name
        if name not in table:
            schema = schemas.REQUESTS.get(name) or schemas.request_for(entry)
            table[name] = (schema, f"{entry.summary} (whyllm {entry.command_name})")
    return table


ENDPOINTS = endpoints()

_ERRORS = {
    400: {"description": "The analysis refused the input (message in `detail`)."},
    401: {"description": "No launch token."},
    403: {"description": "Wrong token, or a cross-origin request."},
    413: {"description": "Body over the size limit."},
    422: {"description": "Parameters outside their limits or the model's ranges."},
    429: {"description": "Busy: the queue is full; retry shortly."},
    504: {"description": "The job ran past the server's time limit and was cancelled."},
}

_NEED_TOKEN = """<!doctype html><html><head><meta charset="utf-8"><title>whyllm: token needed</title></head>
<body><h1>whyllm</h1><p>This explorer needs its launch token. Open the URL that <code>whyllm serve</code>
printed (it ends in <code>?token=...</code>).</p></body></html>"""


def encode(result: Any, fmt: str) -> bytes:
    """Serialise a result: its JSON document, or its self-contained HTML report."""
    return (result.to_html() if fmt == "html" else result.to_json(indent=None)).encode()


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": error}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e.get("ctx", {}) for e in errors if e.get("type") == "json_invalid")
        return 400, f"the request body is not valid JSON ({ctx.get('error', 'parse error')})"
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        shown = repr(e.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        got = "" if e.get("type") == "missing" else f" (got {shown})"
        parts.append(f"{where}: {e.get('msg')}{got}")
    return 422, "; ".join(parts)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        return _error(status, "InvalidRequest", message)

    @app.exception_handler(WhyllmError)
    async def user_error(_: Request, exc: WhyllmError) -> JSONResponse:
        return _error(400, type(exc).__name__, str(exc))

    @app.exception_handler(schemas.RangeError)
    async def out_of_range(_: Request, exc: schemas.RangeError) -> JSONResponse:
        return _error(422, "OutOfRange", str(exc))

    @app.exception_handler(Busy)
    async def busy(_: Request, exc: Busy) -> JSONResponse:
        return _error(429, "Busy", str(exc), {"retry-after": "1"})

    @app.exception_handler(TimedOut)
    async def timed_out(_: Request, exc: TimedOut) -> JSONResponse:
        return _error(504, "TimedOut", str(exc))

    @app.exception_handler(Cancelled)
    async def cancelled(_: Request, exc: Cancelled) -> JSONResponse:
        return _error(503, "Cancelled", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "HTTPError", str(exc.detail), getattr(exc, "headers", None))


class TimedOut(Exception):
    """A job ran longer than the server's limit and was cancelled (answered with 504)."""


async def _wait(request: Request, job: Job, limit: float) -> Any:
    """Await the job; cancel it if the client leaves, this handler is cancelled, or it runs past ``limit``."""
    future = asyncio.wrap_future(job.future)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception not retrieved"
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=0.1)
            if done:
                return future.result()
            if job.started is not None and time.monotonic() - job.started > limit:
                job.cancel()
                raise TimedOut(f"the {job.kind} job ran longer than the server's limit of {limit:g} s and "
                               "was cancelled; ask for less (a shorter prompt, fewer steps or samples)")
            if await request.is_disconnected():
                job.cancel()
                log.info("client went away: cancelled %s job %s", job.kind, job.id)
                return None
    except asyncio.CancelledError:
        job.cancel()
        raise


# a request -> (job name, fn(model, **arguments), progress unit or None)
Resolver = Callable[[schemas.ApiRequest], tuple[str, Callable[..., Any], str | None]]


def _analysis(body: schemas.ApiRequest) -> tuple[str, Callable[..., Any], str | None]:
    """The registered analysis a request runs: (name, ``fn(model, **kwargs)``, progress unit)."""
    entry = ANALYSES[body.name()]
    return entry.name, entry.fn, entry.unit


_KEEP_RESULTS = 16  # results kept for ``GET /api/report/{id}`` (the report of what the page shows)


def _keep(kept: OrderedDict, job_id: str, result: Any) -> None:
    """Keep ``result`` under ``job_id``, dropping the oldest beyond :data:`_KEEP_RESULTS`."""
    kept[job_id] = result
    while len(kept) > _KEEP_RESULTS:
        kept.popitem(last=False)


def _job(model: Model, body: schemas.ApiRequest, fmt: str, resolve: Resolver, kept: OrderedDict) -> Job:
    """Make a job running ``body``'s analysis; the arguments are built on the worker (they may tokenize).

    The result object is also kept in ``kept`` under the job's id, so its HTML report can be written
    later without running it again.
    """
    name, fn, unit = resolve(body)

    def work(job: Job) -> bytes:
        kwargs = body.call(model)
        if unit is not None:
            kwargs["progress"] = job.progress
        result = fn(model, **kwargs)
        _keep(kept, job.id, result)
        return encode(result, fmt)

    return Job(name, work, unit=unit or "passes")


def _add_endpoint(app: FastAPI, name: str, schema: type[schemas.ApiRequest], summary: str,
                  resolve: Resolver = _analysis) -> None:
    async def endpoint(request: Request, body: schema,  # type: ignore[valid-type]
                       fmt: Literal["json", "html"] = Query("json", alias="format")) -> Response:
        job = _job(app.state.model, body, fmt, resolve, app.state.results)
        app.state.worker.submit(job)
        content = await _wait(request, job, app.state.limits.job_seconds)
        if content is None:  # nobody is listening any more
            return _error(499, "ClientClosedRequest", "the client disconnected; the job was cancelled")
        if fmt == "html":
            headers = {"content-security-policy": REPORT_CSP,
                       "content-disposition": f'inline; filename="whyllm-{name}.html"'}
            return HTMLResponse(content, headers=headers)
        return Response(content, media_type="application/json", headers={"x-whyllm-result": job.id})

    endpoint.__name__ = f"api_{name}"
    app.post(f"/api/{name}", summary=summary, responses={200: {"description": "The result's JSON document "
             "(as the command's --json), or its HTML report with format=html."}, **_ERRORS})(endpoint)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(json_safe(data), ensure_ascii=False)}\n\n"


def _add_stream(app: FastAPI) -> None:
    """Add ``POST /api/generate/stream``: one continuation as server-sent events.

    A ``step`` event per token (the step's JSON as in the document), then ``result`` (the whole document
    and its ``id`` for ``GET /api/report/{id}``) or ``error``. A client that disconnects cancels the job;
    what it received stays its own.
    """
    answer = {200: {"description": "text/event-stream: step events, then result or error."}, **_ERRORS}

    @app.post("/api/generate/stream", responses=answer,
              summary="One continuation streamed token by token (server-sent events).")
    async def generate_stream(request: Request, body: schemas.GenerateRequest) -> Response:
        if body.samples > 1:
            return _error(422, "InvalidRequest", "streaming draws one continuation; got "
                          f"samples={body.samples} (use POST /api/generate for several)")
        loop = asyncio.get_running_loop()
        steps: asyncio.Queue = asyncio.Queue()
        entry, kept = ANALYSES[body.name()], app.state.results

        def work(job: Job) -> dict[str, Any]:
            kwargs = body.call(app.state.model)
            kwargs["progress"] = job.progress
            kwargs["on_step"] = lambda _i, step: loop.call_soon_threadsafe(steps.put_nowait, step.to_dict())
            result = entry.fn(app.state.model, **kwargs)
            _keep(kept, job.id, result)
            return result.to_dict()

        job = Job(entry.name, work, unit=entry.unit or "tokens")
        app.state.worker.submit(job)
        future = asyncio.wrap_future(job.future)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

        async def events():
            try:
                while not (future.done() and steps.empty()):
                    try:
                        step = await asyncio.wait_for(steps.get(), 0.1)
                    except TimeoutError:
                        if await request.is_disconnected():
                            job.cancel()
                            return
                        continue
                    yield _sse("step", step)
                try:
                    yield _sse("result", {"id": job.id, "doc": future.result()})
                except (WhyllmError, Cancelled, schemas.RangeError) as exc:
                    yield _sse("error", {"error": type(exc).__name__, "detail": str(exc)})
                except Exception:  # a bug: the response has started, so end it with an error event
                    log.exception("generate stream %s failed", job.id)
                    yield _sse("error", {"error": "InternalError", "detail": "the generation failed (a bug; "
                                         "the server log has the traceback)"})
            finally:
                if not future.done():
                    job.cancel()

        headers = {"cache-control": "no-store"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _info(model: Model, limits: schemas.Limits, runs: Mapping[str, Path]) -> dict[str, Any]:
    a = model.adapter
    return {
        "model": model.name, "n_layers": a.n_layers, "n_heads": a.n_heads, "n_ctx": a.n_ctx,
        "d_vocab": a.d_vocab, "d_model": a.d_model, "endpoints": sorted(ENDPOINTS), "limits": vars(limits),
        "explain_methods": list(METHODS), "runs": sorted(runs), "adapter": isinstance(model, AdaptedModel),
        "explain_method_info": {m.name: {"summary": m.summary, "uses_target": m.uses_target}
                                for m in METHODS.values()},
    }


def _add_emerge(app: FastAPI, runs: Mapping[str, Path]) -> None:
    """``POST /api/emerge`` over the training runs named at launch (requests name a run, never a path)."""

    def resolve(body: schemas.ApiRequest) -> tuple[str, Callable[..., Any], str | None]:
        """The emerge function bound to the named run's folder."""
        if body.run not in runs:  # type: ignore[attr-defined]
            raise schemas.RangeError(f"unknown run {body.run!r}; this server has: "  # type: ignore[attr-defined]
                                     f"{', '.join(sorted(runs)) or 'none (start it with --run DIR)'}")
        path = runs[body.run]  # type: ignore[attr-defined]
        return "emerge", lambda _model, run, **kw: emerge(path, **kw), "checkpoints"

    _add_endpoint(app, "emerge", schemas.EmergeRequest, "How a prediction emerged over a training run's "
                  "checkpoints (whyllm emerge).", resolve)


def _add_diff(app: FastAPI) -> None:
    """``POST /api/diff``: base vs tuned, when the explorer serves a model with an adapter."""

    def resolve(body: schemas.ApiRequest) -> tuple[str, Callable[..., Any], str | None]:
        """The diff, or a 422 when the served model has no adapter."""
        if not isinstance(app.state.model, AdaptedModel):
            raise schemas.RangeError("the explorer serves a model without an adapter; start it with "
                                     "whyllm serve --adapter DIR (a folder written by whyllm tune)")
        return "diff", diff, None

    _add_endpoint(app, "diff", schemas.DiffRequest, "Base vs tuned, prompt by prompt (whyllm diff).", resolve)


def _add_feedback(app: FastAPI, db: Path | None) -> None:
    """``POST /api/feedback`` (flag or correct a completion) and ``GET /api/feedback`` (the stored items)."""

    @app.post("/api/feedback", responses=_ERRORS,
              summary="Record a verdict (and a correction) on a completion of the served model.")
    async def feedback_add(body: schemas.FeedbackRequest) -> dict[str, Any]:
        return await asyncio.to_thread(
            add_feedback, app.state.model, body.prompt, body.completion, body.verdict,
            correction=body.correction, reason=body.reason, completion_ids=body.completion_ids,
            settings=body.settings or {}, source="app", user=body.user, db=db)

    @app.get("/api/feedback", summary="The stored feedback on the served model, newest last.")
    async def feedback_list(limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        items = await asyncio.to_thread(list_feedback, db, model=app.state.model.name)
        return {"items": items[-limit:]}

    @app.get("/api/feedback/export", summary="The served model's feedback as training rows (TRL formats).",
             responses=_ERRORS)
    async def feedback_export(fmt: Literal["dpo", "kto", "sft", "jsonl"] = Query("dpo", alias="format")
                              ) -> dict[str, Any]:
        rows = await asyncio.to_thread(export_feedback, None, fmt, db, model=app.state.model.name)
        return {"format": fmt, "rows": rows}

    @app.post("/api/feedback/import", summary="Store the rows of an export (all or none).", responses=_ERRORS)
    async def feedback_import(body: schemas.FeedbackImport) -> dict[str, Any]:
        name = body.model or app.state.model.name
        ids = await asyncio.to_thread(import_feedback, body.rows, db, model=name, source="api")
        return {"ids": ids}

    @app.delete("/api/feedback/{item_id}", summary="Remove a stored item.", responses=_ERRORS)
    async def feedback_remove(item_id: int = FastPath(ge=1, le=2**63 - 1)) -> dict[str, Any]:
        return {"removed": await asyncio.to_thread(remove_feedback, [item_id], db)}


def create_app(model: Model, *, token: str | None = None, queue_size: int = 8,
               allowed_hosts: Iterable[str] = (), limits: schemas.Limits = schemas.LIMITS,
               runs: Iterable[str | Path] = (), feedback_db: str | Path | None = None) -> FastAPI:
    """Build the explorer app for one loaded model.

    Args:
        model: from :func:`whyllm.load_model`; every request uses it (requests never name a model).
        token: the per-launch token (default: a fresh random one, in ``app.state.token``).
        queue_size: requests that may wait while one runs; more get 429.
        allowed_hosts: Host names accepted besides localhost, 127.0.0.1 and ::1.
        limits: request limits (body size included).
        runs: training-run folders (``whyllm train`` output) that ``POST /api/emerge`` may analyse,
            named by their folder name.
        feedback_db: the feedback database of ``/api/feedback`` (default: the one in whyllm's cache).

    """
    token = token or secrets.token_urlsafe(24)
    worker = Worker(model, queue_size)
    named = {Path(r).name: Path(r) for r in runs}
    for path in named.values():
        checkpoints(path)  # a folder without checkpoints fails at launch, not at the first request

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        worker.close()

    app = FastAPI(title="whyllm", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Why did the model say that? Each `POST /api/<command>` takes the parameters "
                  "of `whyllm <command>` and answers its `--json` document. Send the launch token in the "
                  "`X-Whyllm-Token` header.")
    app.state.model, app.state.token, app.state.worker, app.state.limits = model, token, worker, limits
    app.state.results = OrderedDict()
    _install_handlers(app)
    for name, (schema, summary) in ENDPOINTS.items():
        _add_endpoint(app, name, schema, summary)
    _add_emerge(app, named)
    _add_stream(app)
    _add_feedback(app, Path(feedback_db) if feedback_db is not None else None)
    _add_diff(app)

    @app.get("/api/info", summary="The loaded model, its sizes, the available analyses and the limits.")
    async def info() -> dict[str, Any]:
        return _info(model, limits, named)

    @app.get("/api/status", summary="The running job's progress and the queue length.")
    async def status() -> dict[str, Any]:
        return worker.status()

    @app.get("/", include_in_schema=False)
    async def index(request: Request, token_param: str | None = Query(None, alias="token")) -> Response:
        host = request.headers.get("host", "")
        if token_param is not None:
            if not token_matches(token_param, token):
                return HTMLResponse(_NEED_TOKEN, status_code=403)
            response = RedirectResponse("/", status_code=303)  # drop the token from the address bar
            response.set_cookie(cookie_name(host), token, httponly=True, samesite="strict", path="/")
            return response
        if not token_matches(given_token(request.headers), token):
            return HTMLResponse(_NEED_TOKEN, status_code=401)
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/report/{result_id}", summary="The HTML report of a recent result (its id is the "
             "`X-Whyllm-Result` header of the JSON answer): the result already computed, not a new run; "
             "format=graphml gives a circuit's graph as GraphML.")
    async def report(result_id: str, fmt: Literal["html", "graphml"] = Query("html", alias="format")
                     ) -> Response:
        result = app.state.results.get(result_id)
        if result is None:
            return _error(404, "UnknownResult", f"no recent result with id {result_id!r} (the server "
                          f"keeps the last {_KEEP_RESULTS}); run the analysis again")
        if fmt == "graphml":
            if not hasattr(result, "to_graphml"):
                return _error(400, "InputError", f"a {result.kind} result has no graph; format=graphml "
                              "is for circuits (use format=html)")
            return Response(result.to_graphml(), media_type="application/graphml+xml", headers={
                "content-disposition": f'attachment; filename="whyllm-{result.kind}.graphml"'})
        headers = {"content-security-policy": REPORT_CSP,
                   "content-disposition": f'inline; filename="whyllm-{result.kind}.html"'}
        return HTMLResponse(result.to_html(), headers=headers)

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(Guard, token=token, allowed_hosts=allowed_hosts, max_body=limits.body_bytes)
    return app
