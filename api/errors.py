"""Every error leaves the API as `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from contracts.errors import ErrorCode
from core.errors import AppError, error_body

log = logging.getLogger(__name__)

_HTTP_STATUS_CODES = {
    401: ErrorCode.AUTH_ERROR,
    403: ErrorCode.AUTH_ERROR,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMIT,
}
_HTTP_MESSAGES = {404: "Not found", 405: "Method not allowed"}


class ErrorDetail(BaseModel):
    code: ErrorCode = Field(description="Stable, machine-readable: what went wrong")
    message: str = Field(description="For people; safe to show")
    details: dict[str, Any] = Field(
        description="Per code: `fields` (validation), `retry_after` (rate limits), ..."
    )


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details), status_code, headers=dict(headers or {})
    )


async def app_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # The framework's own answer to a body it could not parse (multipart without a
        # boundary, JSON that is not UTF-8, ...): the documented 422, as for malformed JSON.
        return _unparsable_body(str(exc.detail))
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allowed := allowed_methods(request)):
        # Starlette names only the first route that matched the path; RFC 9110 wants them all.
        headers["Allow"] = ", ".join(allowed)
    code = _HTTP_STATUS_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
    message = _HTTP_MESSAGES.get(exc.status_code) or str(exc.detail)
    return error_response(exc.status_code, code, message, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method that some route of the app answers at this request's path."""
    methods: set[str] = set()
    # Included routers stay nested in FastAPI's route table: walk their effective routes.
    for route in iter_route_contexts(request.app.routes):
        if route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods.update(route.methods)
    return sorted(methods)


def _unparsable_body(reason: str) -> JSONResponse:
    # `reason` is the framework's fixed text ("Missing boundary in multipart."): no input echoed.
    field = {"field": "body", "location": "body", "message": reason, "type": "body_invalid"}
    return error_response(
        422,
        ErrorCode.VALIDATION_ERROR,
        "The request body could not be parsed",
        {"fields": [field]},
    )


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Never echo the submitted values: they may be passwords.
    fields = [
        {
            "field": ".".join(str(part) for part in error["loc"][1:]) or str(error["loc"][0]),
            "location": str(error["loc"][0]) if error["loc"] else "body",
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    return error_response(
        422, ErrorCode.VALIDATION_ERROR, "Request validation failed", {"fields": fields}
    )


async def dependency_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The database or Redis is down or saturated: a 503 the client may retry, not a 500.

    Login fails closed when Redis is down: its rate limit is a security control."""
    dependency = "redis" if isinstance(exc, RedisError) else "database"
    log.warning("%s unavailable: %s", dependency, type(exc).__name__, exc_info=exc)
    return error_response(
        503,
        ErrorCode.SERVICE_UNAVAILABLE,
        f"The {dependency} is unavailable; retry shortly",
        {"dependency": dependency, "request_id": getattr(request.state, "request_id", None)},
        headers={"Retry-After": "5"},
    )


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The last resort (outside the request middleware, which has already logged `exc`)."""
    request_id = getattr(request.state, "request_id", None)
    headers = {"X-Request-ID": request_id} if request_id else None
    return error_response(
        500,
        ErrorCode.INTERNAL_ERROR,
        "Internal server error",
        {"request_id": request_id},
        headers=headers,
    )


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    # Pool exhausted, connection refused or lost: the database; any Redis failure: Redis.
    for unavailable in (sa_exc.TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError):
        app.add_exception_handler(unavailable, dependency_error_handler)
    app.add_exception_handler(RedisError, dependency_error_handler)
    app.add_exception_handler(Exception, internal_error_handler)
