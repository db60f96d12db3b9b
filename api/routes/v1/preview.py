import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import CurrentUser, Limit, Offset, PreviewServiceDep, SettingsDep
from core.errors import AuthError, ErrorCode, PreviewError, StorageError
from services.common import DEFAULT_PAGE_SIZE, Page
from services.previews.schemas import (
    BuildAccepted,
    BuildRead,
    BuildReady,
    BuildRequest,
    ManifestRead,
    ShareRead,
    ShareRequest,
)
from workflows.contracts import BuildPhase

router = APIRouter(prefix="/preview", tags=["preview"])
MAX_WAIT_S = 60


@router.post(
    "/build",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": BuildReady, "description": "Ready within `wait` seconds"}},
)
async def request_build(
    body: BuildRequest,
    user: CurrentUser,
    previews: PreviewServiceDep,
    settings: SettingsDep,
    response: Response,
    wait: Annotated[int, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait")] = 0,
) -> BuildAccepted | BuildReady:
    """Bundle the sources with Metro. Identical requests share one build; a build that is
    ready already is answered at once."""
    build, ready = await previews.request_build(user, body)
    view = await previews.describe(build) if ready else None
    if not ready and wait:
        view = await previews.wait(build, wait)
    if view is not None and view.status == BuildPhase.READY:
        response.status_code = status.HTTP_200_OK
        return previews.ready_answer(build)
    if view is not None and view.status == BuildPhase.FAILED and view.error is not None:
        error_type = StorageError if view.error.code == ErrorCode.STORAGE_ERROR else PreviewError
        details = {**view.error.details, "build_id": build.build_id}
        raise error_type(view.error.message, code=view.error.code, details=details)
    return BuildAccepted(
        build_id=build.build_id,
        status=view.status if view is not None else BuildPhase.QUEUED,
        status_url=f"{settings.base_url}/api/v1/preview/builds/{build.build_id}",
    )


@router.get("/builds")
async def list_builds(
    project_id: Annotated[uuid.UUID, Query(description="The project whose builds to list")],
    user: CurrentUser,
    previews: PreviewServiceDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    offset: Offset = 0,
) -> Page[BuildRead]:
    """A project's builds, newest first (from the build records)."""
    return await previews.list(user, project_id, limit=limit, offset=offset)


@router.get("/builds/{build_id}")
async def read_build(build_id: str, user: CurrentUser, previews: PreviewServiceDep) -> BuildRead:
    """Status from the workflow; when ready, a freshly signed URL and preview token."""
    return await previews.get(user, build_id)


@router.delete("/builds/{build_id}", status_code=status.HTTP_202_ACCEPTED)
async def cancel_build(build_id: str, user: CurrentUser, previews: PreviewServiceDep) -> BuildRead:
    """Cancel a running build; its bundler is stopped."""
    return await previews.cancel(user, build_id)


@router.post("/builds/{build_id}/share", status_code=status.HTTP_201_CREATED)
async def share_build(
    build_id: str, body: ShareRequest, user: CurrentUser, previews: PreviewServiceDep
) -> ShareRead:
    """Let another user open this build; they get a `preview.shared` notification."""
    return await previews.share(user, build_id, body.username)


@router.get("/manifest")
async def read_manifest(
    request: Request,
    previews: PreviewServiceDep,
    token: Annotated[str | None, Query(description="Preview token (or Authorization)")] = None,
) -> ManifestRead:
    """For the mobile preview app: authenticated by the preview token alone
    (`Authorization: Preview <token>` or `?token=`), no user account."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    preview_token = token or (credential.strip() if scheme.lower() == "preview" else "")
    if not preview_token:
        raise AuthError(
            "Send the preview token: 'Authorization: Preview <token>' or ?token=",
            headers={"WWW-Authenticate": "Preview"},
        )
    return await previews.manifest(preview_token)
