"""The FastAPI application of ``aeflow api``: routes, error responses and the request flow.

A POST request: the guard (token, log) -> the body read up to its byte limit -> in a worker
thread: parse (JSON / Arrow / Parquet), row limit, input contract, the operation on the model
read once from the holder, encode -> the response, with the model version in every body and in
the ``X-Model-Version`` header.

Errors a client can fix are JSON ``{"detail": ...}`` with the status that says which: 400 an
unreadable body, 401 no or a wrong token, 413 too many bytes or rows, 415 a media type not
read, 422 rows that break the input contract (one ``{column, rule, fix, rows, n_rows}`` per
problem), 503 no model loaded yet. Anything else is a 500 naming no internals; its traceback goes
to the server log only.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from serving import codecs, operations
from serving.guards import ROWS_KEY, VERSION_KEY, BodyTooLarge, Guard, read_body
from serving.model_holder import ModelHolder, ServedModel
from serving.rules import UNSEEN_POLICIES, InputError

log = logging.getLogger("aeflow.api")
VERSION_HEADER = "X-Model-Version"


@dataclass(frozen=True)
class ApiSettings:
    """Limits and defaults of one service.

    Attributes:
        max_rows: rows per request (more: 413).
        max_body_bytes: bytes per request body (more: 413).
        token: the bearer token every request but /health and /ready must carry; None: none.
        top_k: columns named in ``top_features`` unless a request asks for another number.
        unseen: what an unseen categorical level gets unless a request says: "reject" (422) or
            "score" (as batch scoring scores it).
        compute_threads: requests computed at once (others wait their turn, without failing).
        torch_threads: torch intra-op threads of each compute thread (and the event loop's).
        inline_bytes: bodies up to this size are computed on the event loop thread, bigger ones
            in the compute threads.
    """

    max_rows: int = 100_000
    max_body_bytes: int = 64 * 2**20
    token: str | None = None
    top_k: int = 3
    unseen: str = "reject"
    compute_threads: int = 2
    torch_threads: int = 1
    inline_bytes: int = 16 * 2**10


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, media_type=codecs.JSON, headers=headers
    )


# Query parameters of the operations. They are read by hand (documented through openapi_extra):
# FastAPI's parameter injection cost more per request than a one-row /score's whole scoring.
MAX_TOP_K = 1000
_PARAMETERS_DOC = [
    {
        "name": "top_k",
        "in": "query",
        "required": False,
        "description": "columns named in top_features (default: the config's)",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
    },
    {
        "name": "unseen",
        "in": "query",
        "required": False,
        "description": "an unseen categorical level: 'reject' (422) or 'score' it as batch "
        f"scoring does; default: the server's ({'/'.join(UNSEEN_POLICIES)})",
        "schema": {"type": "string", "enum": list(UNSEEN_POLICIES)},
    },
]


def _parameter_problem(name: str, message: str) -> dict[str, Any]:
    return {
        "column": None,
        "rule": f"query.{name}: {message}",
        "fix": "see GET /docs for the parameters this endpoint takes",
    }


def query_options(query: Any, settings: ApiSettings) -> tuple[int, str, list[dict[str, Any]]]:
    """(top_k, unseen, problems) from a request's query parameters, the server's defaults for
    those not given; each problem a 422 entry naming the parameter and its rule."""
    problems = []
    top_k, unseen = settings.top_k, settings.unseen
    raw = query.get("top_k")
    if raw is not None:
        try:
            top_k = int(raw)
        except ValueError:
            problems.append(_parameter_problem("top_k", "Input should be a valid integer"))
        else:
            if not 1 <= top_k <= MAX_TOP_K:
                problems.append(
                    _parameter_problem("top_k", f"Input should be from 1 to {MAX_TOP_K}")
                )
    raw = query.get("unseen")
    if raw is not None:
        if raw in UNSEEN_POLICIES:
            unseen = raw
        else:
            expected = " or ".join(repr(p) for p in UNSEEN_POLICIES)
            problems.append(_parameter_problem("unseen", f"Input should be {expected}"))
    return top_k, unseen, problems


_BODY_DOC = {
    "required": True,
    "description": "JSON records (one object, or a list of objects), an Arrow IPC stream or "
    "file, or a Parquet file; answered in the same form unless Accept asks for another.",
    "content": {
        codecs.JSON: {
            "schema": {
                "oneOf": [
                    {"type": "object", "additionalProperties": True},
                    {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                ]
            }
        },
        codecs.ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
        codecs.PARQUET: {"schema": {"type": "string", "format": "binary"}},
    },
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "one result row per input row, in the input's order and form",
        "content": {
            codecs.ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
            codecs.PARQUET: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    400: {"description": "the body cannot be read as its Content-Type"},
    401: {"description": "a bearer token is required and was missing or wrong"},
    413: {"description": "more bytes or rows than the service takes per request"},
    415: {"description": "a Content-Type the service does not read"},
    422: {"description": "rows that break the input contract: column, rule, fix, rows"},
    503: {"description": "no model is loaded yet"},
}
_DESCRIPTIONS = {
    "score": "Anomaly score, percentile, flag, threshold and top features of each row: the "
    "values `aeflow score` writes for the same row.",
    "encode": "Encoded features z_0..z_{k-1} of each row (float32), as the scored files hold them.",
    "explain": "Per-column contributions to each row's score (they sum to it), the direction of "
    "each column's deviation and the value the model expected.",
    "reconstruct": "Each row as the model reconstructs it (encode, then decode), in the columns' "
    "own units and levels.",
    "decode": "Rows of z_0..z_{k-1} -> the rows they decode to, in the columns' own units and "
    "levels.",
}


def create_app(holder: ModelHolder, settings: ApiSettings | None = None) -> FastAPI:
    """The application serving ``holder``'s model (whose watcher it starts and stops)."""
    settings = settings or ApiSettings()
    limiter = anyio.CapacityLimiter(settings.compute_threads)
    torch_ready = threading.local()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        _set_torch_threads()  # the event loop's thread computes the small requests
        holder.start()
        try:
            yield
        finally:
            holder.stop()

    app = FastAPI(
        title="aeflow online scoring",
        description="Score, encode, explain, reconstruct and decode rows with the model bundle "
        "batch scoring uses. Bodies: JSON records, Arrow IPC or Parquet. See docs/serving.md.",
        lifespan=lifespan,
    )

    def _set_torch_threads() -> None:
        if not getattr(torch_ready, "done", False):
            import torch

            torch.set_num_threads(settings.torch_threads)  # this thread's pool
            torch_ready.done = True

    def compute(served: ServedModel, raw: bytes, form: str, out_form: str, operation: str, **kw):
        _set_torch_threads()
        latent = operation == "decode"
        rules = served.contract.wanted(latent)
        body = codecs.parse_body(raw, form, rules, settings.max_rows)
        if form == out_form == "json" and body.rows == 0:
            return b"[]", 0  # an empty list: no rows, so no columns to check either
        batch = served.contract.check(
            body.table, latent=latent, unseen=kw["unseen"], found=body.problems
        )
        table = operations.HANDLERS[operation](served, batch, kw["top_k"])
        return codecs.encode_table(table, out_form, body.single), table.num_rows

    async def run(request: Request, operation: str):
        top_k, unseen, problems = query_options(request.query_params, settings)
        if problems:
            return _json(422, {"detail": problems})
        served = holder.current
        if served is None:
            return _json(503, {"detail": "no model is loaded yet; retry in a few seconds"})
        request.scope["state"][VERSION_KEY] = served.version
        headers = {VERSION_HEADER: served.version}
        try:
            form = codecs.media_form(request.headers.get("content-type"))
            out_form = codecs.response_form(request.headers.get("accept"), form)
            raw = await read_body(request, settings.max_body_bytes)
            work = functools.partial(
                compute, served, raw, form, out_form, operation, top_k=top_k, unseen=unseen
            )
            if len(raw) <= settings.inline_bytes:
                # A small request costs less than handing it to a thread and back (the GIL
                # passes between them), so it runs here; big ones run in the compute threads.
                content, rows = work()
            else:
                content, rows = await anyio.to_thread.run_sync(work, limiter=limiter)
        except InputError as error:
            problems = [p.to_dict() for p in error.problems]
            return _json(422, {"detail": problems, "model_version": served.version}, headers)
        except (BodyTooLarge, codecs.RowLimitError) as error:
            return _json(413, {"detail": str(error)}, headers)
        except codecs.BodyError as error:
            return _json(error.status, {"detail": str(error)}, headers)
        request.scope["state"][ROWS_KEY] = rows
        return Response(content, media_type=codecs.RESPONSE_TYPES[out_form], headers=headers)

    def add_operation(operation: str) -> None:
        async def endpoint(request: Request):
            return await run(request, operation)

        app.add_api_route(
            f"/{operation}",
            endpoint,
            methods=["POST"],
            name=operation,
            summary=_DESCRIPTIONS[operation].split(":")[0].split(".")[0],
            description=_DESCRIPTIONS[operation],
            openapi_extra={"requestBody": _BODY_DOC, "parameters": _PARAMETERS_DOC},
            responses=_RESPONSES,
            response_class=Response,
        )

    for operation in operations.OPERATIONS:
        add_operation(operation)

    @app.get("/health", summary="The process answers")
    async def health() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/ready", summary="A model is loaded and served")
    async def ready() -> Response:
        served = holder.current
        if served is None:
            return _json(503, {"status": "loading", "model_version": None})
        return _json(200, {"status": "ready", "model_version": served.version})

    @app.get("/model", summary="The served model: version, columns, threshold, trained_at")
    async def model(request: Request) -> Response:
        served = holder.current
        if served is None:
            return _json(503, {"detail": "no model is loaded yet; retry in a few seconds"})
        request.scope["state"][VERSION_KEY] = served.version
        document = {
            **served.describe(),
            **holder.status(),
            "limits": {"max_rows": settings.max_rows, "max_body_bytes": settings.max_body_bytes},
            "defaults": {"top_k": settings.top_k, "unseen": settings.unseen},
        }
        return _json(200, document, {VERSION_HEADER: served.version})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
        return _json(
            500, {"detail": "internal error while handling the request; the server log has it"}
        )

    paths = {f"/{operation}": operation for operation in operations.OPERATIONS}

    class OperationLane:
        """ASGI: ``POST /score`` etc. straight to :func:`run`, past Starlette's routing and
        FastAPI's per-request machinery, which cost a third of a one-row /score's scoring; the
        routes stay registered above for everything else (their OpenAPI description, 405s)."""

        def __init__(self, inner: Any):
            self.inner = inner

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            operation = paths.get(scope.get("path")) if scope["type"] == "http" else None
            if operation is None or scope.get("method") != "POST":
                await self.inner(scope, receive, send)
                return
            response = await run(Request(scope, receive), operation)
            await response(scope, receive, send)

    # Both inside Starlette's error middleware, so an exception in an operation is a logged 500
    # (internal_error); the Guard outside the lane, so every request is authorised and logged.
    app.add_middleware(OperationLane)
    app.add_middleware(Guard, token=settings.token)
    return app
