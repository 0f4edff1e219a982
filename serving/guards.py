"""What stands in front of the operations: the bearer token, the body limit and the request log.

:class:`Guard` is plain ASGI middleware (cheaper per request than Starlette's ``BaseHTTPMiddleware``):

- with a token configured, every path but ``/health`` and ``/ready`` needs
  ``Authorization: Bearer <token>`` (compared in constant time); otherwise 401;
- every request is logged in one line (client, method, path, status, rows, bytes in and out,
  milliseconds, model version) -- never the query string, a header value or a row value.

:func:`read_body` reads a request body up to a byte limit and raises :class:`BodyTooLarge` (413)
past it, from ``Content-Length`` before reading anything when the client declares it.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import orjson

log = logging.getLogger("aeflow.api")

OPEN_PATHS = frozenset({"/health", "/ready"})
# Keys of the ASGI scope's "state" that the handlers fill for the request log.
ROWS_KEY = "aeflow_rows"
VERSION_KEY = "aeflow_model_version"


class BodyTooLarge(ValueError):
    """A request body over the byte limit (HTTP 413)."""


def _too_large(size: int | str, limit: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"the request body is {size} bytes; this service takes at most {limit:,} bytes per request "
        "(aeflow api --max-body-mb): send fewer rows per request, or Arrow/Parquet for bulk"
    )


async def read_body(request: Any, limit: int) -> bytes:
    """The body of a Starlette ``request``, at most ``limit`` bytes; BodyTooLarge past it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(f"{int(declared):,}", limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"over {limit:,}", limit)
        chunks.append(chunk)
    return b"".join(chunks)


class Guard:
    """ASGI middleware: bearer token (when ``token`` is set) and one log line per request."""

    def __init__(self, app: Any, token: str | None = None):
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    def _authorized(self, scope: dict[str, Any]) -> bool:
        if self.expected is None or scope.get("path") in OPEN_PATHS:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                return hmac.compare_digest(value, self.expected)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        outcome = {"status": 500, "bytes_out": 0}

        async def send_and_note(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
            elif message["type"] == "http.response.body":
                outcome["bytes_out"] += len(message.get("body", b""))
            await send(message)

        scope.setdefault("state", {})
        try:
            if self._authorized(scope):
                await self.app(scope, receive, send_and_note)
            else:
                await _unauthorized(send_and_note)
        finally:
            _log_request(scope, outcome, time.perf_counter() - started)


async def _unauthorized(send: Any) -> None:
    body = orjson.dumps(
        {
            "detail": "this service needs 'Authorization: Bearer <token>' with the token set in "
            "the server's environment (AEFLOW_API_TOKEN); the request had none or another"
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="aeflow"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _log_request(scope: dict[str, Any], outcome: dict[str, int], seconds: float) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    state = scope.get("state") or {}
    client = scope.get("client") or ("-", 0)
    bytes_in = "-"
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            bytes_in = value.decode("latin-1")
    log.info(
        '%s "%s %s" %d rows=%s bytes_in=%s bytes_out=%d ms=%.1f model=%s',
        client[0],
        scope.get("method"),
        scope.get("path"),
        outcome["status"],
        state.get(ROWS_KEY, "-"),
        bytes_in,
        outcome["bytes_out"],
        seconds * 1000,
        state.get(VERSION_KEY, "-"),
    )
