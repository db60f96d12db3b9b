"""The FastAPI application factory (`uvicorn --factory api.app:create_app`)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import register_error_handlers
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

    app = FastAPI(
        title="HiveSync API",
        version=API_VERSION,
        description="Preview builds and AI documentation passes for React Native projects.",
        lifespan=lifespan,
    )
    register_error_handlers(app)
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
    app.include_router(health.router)
    app.include_router(v1_router)
    return app
