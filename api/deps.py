"""Dependencies for routes, as `Annotated` aliases (`SessionDep`, `CurrentUser`, ...).

All are `async def`, even those that never await: FastAPI runs a plain `def` dependency in its
thread pool, and the thread hop costs more than the work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from api.resources import Resources
from core.config import Settings
from core.errors import AuthError
from core.logging import current_request_context
from core.models import User
from services.auth.service import AuthService, authenticate_access_token
from services.common import MAX_PAGE_SIZE
from services.docs.service import DocJobService
from services.notifications.service import NotificationService
from services.previews.build_service import BuildService
from services.previews.manifest_service import ManifestService
from services.previews.share_service import ShareService
from services.previews.source_service import SourceService
from services.projects.deletion import ProjectDeletion
from services.projects.service import ProjectService
from services.quotas import QuotaService
from services.users.service import UserService


async def get_resources(connection: HTTPConnection) -> Resources:
    """The app's clients; `HTTPConnection` so that WebSocket routes can use it too."""
    resources: Resources = connection.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request, resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """One session per request. Safe methods (which must not change state) read in autocommit;
    the others get a transaction that the service commits.

    Either way the session holds a pooled connection from its first statement until it
    commits or closes (autocommit included): services give it back with
    `core.db.release_connection` / `without_connection` before slow work (a workflow wait,
    a parse, a hash, a storage call), so a slow request never keeps one from others. The
    session closes when the route returns (scope "function"), not after the response is sent:
    a client that reads its response slowly holds no connection either."""
    factory = (
        resources.read_session_factory
        if request.method in _SAFE_METHODS
        else resources.session_factory
    )
    async with factory() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_client_ip(request: Request) -> str:
    """The peer address. Behind a proxy, uvicorn rewrites it from X-Forwarded-For for the
    addresses listed in FORWARDED_ALLOW_IPS (and only those)."""
    return request.client.host if request.client else "unknown"


ClientIP = Annotated[str, Depends(get_client_ip)]

# Declares the bearer scheme in OpenAPI, so the "Authorize" button of /docs works.
_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_current_user(
    session: SessionDep, settings: SettingsDep, token: Annotated[str | None, Depends(_bearer)]
) -> User:
    if not token:
        raise AuthError("Not authenticated: send 'Authorization: Bearer <access token>'")
    user = await authenticate_access_token(session, settings, token)
    context = current_request_context()
    if context is not None:
        context.user_id = str(user.id)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_auth_service(session: SessionDep, resources: ResourcesDep) -> AuthService:
    return AuthService(
        session, resources.settings, resources.password_hasher, resources.rate_limiter
    )


async def get_user_service(session: SessionDep, resources: ResourcesDep) -> UserService:
    return UserService(
        session, resources.password_hasher, resources.rate_limiter, resources.settings
    )


async def get_quota_service(session: SessionDep, resources: ResourcesDep) -> QuotaService:
    return QuotaService(session, resources.settings, resources.rate_limiter, resources.running_jobs)


QuotaServiceDep = Annotated[QuotaService, Depends(get_quota_service)]


async def get_project_service(session: SessionDep) -> ProjectService:
    return ProjectService(session)


async def get_project_deletion(session: SessionDep, resources: ResourcesDep) -> ProjectDeletion:
    return ProjectDeletion(session, resources.settings, resources.temporal)


async def get_notification_service(
    session: SessionDep, resources: ResourcesDep
) -> NotificationService:
    return NotificationService(session, resources.notification_hub)


async def get_build_service(
    session: SessionDep, resources: ResourcesDep, quotas: QuotaServiceDep
) -> BuildService:
    return BuildService(session, resources.settings, resources.storage, resources.temporal, quotas)


async def get_source_service(session: SessionDep, resources: ResourcesDep) -> SourceService:
    return SourceService(session, resources.storage)


async def get_manifest_service(session: SessionDep, resources: ResourcesDep) -> ManifestService:
    return ManifestService(session, resources.settings, resources.storage)


async def get_share_service(
    session: SessionDep, resources: ResourcesDep, quotas: QuotaServiceDep
) -> ShareService:
    return ShareService(session, resources.notification_hub, quotas)


async def get_doc_job_service(
    session: SessionDep, resources: ResourcesDep, quotas: QuotaServiceDep
) -> DocJobService:
    return DocJobService(session, resources.settings, resources.temporal, quotas)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
DocJobServiceDep = Annotated[DocJobService, Depends(get_doc_job_service)]
BuildServiceDep = Annotated[BuildService, Depends(get_build_service)]
SourceServiceDep = Annotated[SourceService, Depends(get_source_service)]
ManifestServiceDep = Annotated[ManifestService, Depends(get_manifest_service)]
ShareServiceDep = Annotated[ShareService, Depends(get_share_service)]
NotificationServiceDep = Annotated[NotificationService, Depends(get_notification_service)]
UserServiceDep = Annotated[UserService, Depends(get_user_service)]
ProjectServiceDep = Annotated[ProjectService, Depends(get_project_service)]
ProjectDeletionDep = Annotated[ProjectDeletion, Depends(get_project_deletion)]

# Beyond PostgreSQL's bigint an OFFSET is an error, and far below it a scan of that many rows:
# a bound that no real listing reaches (10,000 pages of the largest size).
MAX_OFFSET = 1_000_000
# Ids compared with a bigint column (notification ids) must fit one.
MAX_BIGINT = 2**63 - 1

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip")]
