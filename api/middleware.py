"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request and breaks
context variables)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from contracts.errors import ErrorCode
from core.logging import RequestContext, bind_request_context, reset_request_context

log = logging.getLogger("hivesync.access")
error_log = logging.getLogger("hivesync.errors")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = ("/health",)


class RequestContextMiddleware:
    """Gives each request an id (the client's `X-Request-ID` when well-formed), echoes it in the
    response, binds it to every log line of the request, and writes one access-log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        context = RequestContext(request_id=request_id)
        token = bind_request_context(context)
        started = time.perf_counter()
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            # Logged here, while the request id is bound; the 500 response is rendered
            # outside this middleware by the internal error handler.
            error_log.exception("unhandled error")
            raise
        finally:
            _log_access(scope, status, time.perf_counter() - started)
            reset_request_context(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


def _log_access(scope: Scope, status: int, elapsed_s: float) -> None:
    path: str = scope["path"]
    level = logging.DEBUG if path.startswith(_QUIET_PATHS) and status < 500 else logging.INFO
    if not log.isEnabledFor(level):
        return
    client = scope.get("client")
    log.log(
        level,
        "%s %s %d",
        scope["method"],
        path,
        status,
        extra={
            "http_method": scope["method"],
            "path": path,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "status": status,
            "duration_ms": round(elapsed_s * 1000, 2),
            "client_ip": client[0] if client else None,
        },
    )


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` with a 413: at once when Content-Length says so,
    or as soon as a streamed (chunked) body passes the limit.

    FastAPI's own `max_body_size` answers some of these cases as plain text or as
    `{"detail": ...}`; this one always answers in the documented error shape."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        larger: Sequence[tuple[str, re.Pattern[str], int]] = (),
    ) -> None:
        """`larger`: (method, path pattern, limit) for the routes that take sources."""
        self.app = app
        self.max_bytes = max_bytes
        self.larger = list(larger)

    def limit_for(self, scope: Scope) -> int:
        for method, pattern, limit in self.larger:
            if scope["method"] == method and pattern.fullmatch(scope["path"]):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        message = f"Request body is larger than {limit} bytes"
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = error_response(413, ErrorCode.PAYLOAD_TOO_LARGE, message)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    # An HTTPException passes through FastAPI's body parsing to our handler.
                    raise HTTPException(413, message)
            return event

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
