"""The FastAPI application factory (`uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from api.errors import ErrorResponse, register_error_handlers
from api.input_checks import reject_unstorable_text
from api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from api.resources import close_resources, open_resources
from api.routes import health
from api.routes.v1 import router as v1_router
from core.config import Settings, get_settings
from core.logging import configure_logging, flush_logging
from services.docs.schemas import MAX_CONTENT_BYTES

log = logging.getLogger(__name__)

API_VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = await open_resources(settings)
        app.state.resources = resources
        log.info(
            "api started",
            extra={
                "environment": settings.environment,
                "database": resources.engine.dialect.name,
                "rate_limiter": settings.rate_limit_backend,
                "temporal_address": settings.temporal_address,
            },
        )
        if settings.jwt_secret_generated:
            log.warning(
                "JWT_SECRET is not set: using a random one for this process; tokens will not "
                "survive a restart or work across replicas"
            )
        try:
            yield
        finally:
            await close_resources(resources)
            log.info("api stopped")
            # uvicorn may end the process with the signal it caught: write the queue out now.
            flush_logging()

    app = _routed_app(lifespan)
    # Added last = outermost: the request id wraps everything, including the size check.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_body_bytes,
        larger=[
            ("POST", re.compile(r"/api/v1/preview/build"), settings.max_source_upload_bytes),
            (
                "POST",
                re.compile(r"/api/v1/projects/[^/]+/sources"),
                settings.max_source_upload_bytes,
            ),
            # 1 MB of content, which JSON escaping can grow up to ~6x in the worst case.
            ("POST", re.compile(r"/api/v1/docs/jobs"), 8 * MAX_CONTENT_BYTES),
        ],
    )
    app.add_middleware(RequestContextMiddleware)
    return app


def _routed_app(lifespan: Callable[[FastAPI], Any] | None = None) -> FastAPI:
    """The routes, handlers and documentation (what the OpenAPI document is made of)."""
    app = FastAPI(
        title="HiveSync API",
        version=API_VERSION,
        description="Preview builds and AI documentation passes for React Native projects.",
        lifespan=lifespan,
        # Before every route's own dependencies and validation.
        dependencies=[Depends(reject_unstorable_text)],
    )
    register_error_handlers(app)
    app.include_router(health.router)
    app.include_router(v1_router)
    install_openapi(app)
    return app


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, without settings, logging or resources (for tools)."""
    return _routed_app().openapi()


# Error statuses, each with the codes it carries, in the one `ErrorResponse` shape.
_ERRORS: dict[int, tuple[str, str]] = {
    401: ("AUTH_ERROR", "Not authenticated: no credentials, or invalid or expired ones"),
    403: ("AUTH_ERROR", "Authenticated, but not allowed (e.g. a wrong current password)"),
    404: ("NOT_FOUND", "Not found, or not yours: another user's objects are never revealed"),
    409: ("CONFLICT", "Conflicts with the current state (taken name, job already ended, ...)"),
    413: ("PAYLOAD_TOO_LARGE", "The body or the content is over its limit"),
    422: (
        "VALIDATION_ERROR",
        "The input is invalid (`details.fields` names each problem), or the sources are "
        "(PREVIEW_INVALID_SOURCE, PREVIEW_BUILD_FAILED)",
    ),
    429: ("RATE_LIMIT", "Too many requests or running jobs: retry after `Retry-After` seconds"),
    500: ("INTERNAL_ERROR", "An unexpected error; `details.request_id` names it in the logs"),
    503: (
        "SERVICE_UNAVAILABLE",
        "A dependency (database, Redis, Temporal, storage: STORAGE_ERROR) is unavailable; "
        "retry shortly",
    ),
}


def error_statuses(path: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation can answer, from what applies to it:

    - every operation: 413 (the body size limit applies to every request), 500, 503;
    - with parameters or a body: 422 (FastAPI's own rule, with our error shape);
    - under /api/: 401, 403, 404, 409, 429 (authentication, ownership, state and quotas apply
      to the whole versioned API)."""
    statuses = {413, 500, 503}
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(422)
    if path.startswith("/api/"):
        statuses.update({401, 403, 404, 409, 429})
    return sorted(statuses)


def install_openapi(app: FastAPI) -> None:
    """Documents the error answers of every operation (routes added later included) with the
    `ErrorResponse` schema, in place of FastAPI's `HTTPValidationError` that the API never
    sends."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, definitions = models_json_schema(
            [(ErrorResponse, "validation")], ref_template="#/components/schemas/{model}"
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(definitions.get("$defs", {}))
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        reference = {"$ref": "#/components/schemas/ErrorResponse"}
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                for status in error_statuses(path, operation):
                    code, description = _ERRORS[status]
                    responses[str(status)] = {
                        "description": description,
                        "content": {
                            "application/json": {
                                "schema": reference,
                                "example": {
                                    "error": {"code": code, "message": description, "details": {}}
                                },
                            }
                        },
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
