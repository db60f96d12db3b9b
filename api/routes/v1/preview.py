import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import (
    BuildServiceDep,
    CurrentUser,
    Limit,
    ManifestServiceDep,
    Offset,
    ShareServiceDep,
)
from core.errors import AuthError
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
    builds: BuildServiceDep,
    response: Response,
    wait: Annotated[int, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait")] = 0,
) -> BuildAccepted | BuildReady:
    """Bundle the sources with Metro. Identical requests share one build; a build that is
    ready already is answered at once (200), as is one that gets ready within `wait`."""
    answer = await builds.request(user, body, wait_s=wait)
    if isinstance(answer, BuildReady):
        response.status_code = status.HTTP_200_OK
    return answer


@router.get("/builds")
async def list_builds(
    project_id: Annotated[uuid.UUID, Query(description="The project whose builds to list")],
    user: CurrentUser,
    builds: BuildServiceDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    offset: Offset = 0,
) -> Page[BuildRead]:
    """A project's builds, newest first (from the build records)."""
    return await builds.list(user, project_id, limit=limit, offset=offset)


@router.get("/builds/{build_id}")
async def read_build(build_id: str, user: CurrentUser, builds: BuildServiceDep) -> BuildRead:
    """Status from the workflow; when ready, a freshly signed URL and preview token."""
    return await builds.get(user, build_id)


@router.delete("/builds/{build_id}", status_code=status.HTTP_202_ACCEPTED)
async def cancel_build(build_id: str, user: CurrentUser, builds: BuildServiceDep) -> BuildRead:
    """Cancel a running build; its bundler is stopped."""
    return await builds.cancel(user, build_id)


@router.post("/builds/{build_id}/share", status_code=status.HTTP_201_CREATED)
async def share_build(
    build_id: str, body: ShareRequest, user: CurrentUser, shares: ShareServiceDep
) -> ShareRead:
    """Let another user open this build; they get a `preview.shared` notification."""
    return await shares.share(user, build_id, body.username)


@router.get("/manifest")
async def read_manifest(
    request: Request,
    manifests: ManifestServiceDep,
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
    return await manifests.manifest(preview_token)
