import uuid
from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile

from api.deps import (
    CurrentUser,
    Limit,
    Offset,
    ProjectDeletionDep,
    ProjectServiceDep,
    SettingsDep,
    SourceServiceDep,
)
from core.errors import PayloadTooLarge
from services.common import DEFAULT_PAGE_SIZE, Page
from services.previews.schemas import SourceUploaded
from services.previews.sources import spooled_size
from services.projects.schemas import ProjectCreate, ProjectRead, ProjectUpdate

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post("", status_code=201)
async def create_project(
    body: ProjectCreate, user: CurrentUser, projects: ProjectServiceDep
) -> ProjectRead:
    return ProjectRead.model_validate(await projects.create(user, body))


@router.get("")
async def list_projects(
    user: CurrentUser,
    projects: ProjectServiceDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    offset: Offset = 0,
) -> Page[ProjectRead]:
    """Your projects, newest first."""
    return await projects.list(user, limit=limit, offset=offset)


@router.post("/{project_id}/sources", status_code=201)
async def upload_sources(
    project_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="A .zip or .tar.gz of the app's sources")],
    user: CurrentUser,
    sources: SourceServiceDep,
    settings: SettingsDep,
) -> SourceUploaded:
    """Upload the sources once; build from them with `source_id`. Checked before anything is
    stored: relative paths, regular files only, at most 5,000 files and 50 MB unpacked.

    The body streams into a temporary file (Starlette spools parts over 1 MB to disk; the body
    limit middleware stops it at `max_source_upload_bytes`); it is never read whole here."""
    size = spooled_size(file.file)
    if size > settings.max_source_upload_bytes:
        raise PayloadTooLarge(
            f"The archive is larger than {settings.max_source_upload_bytes} bytes",
            details={"max_bytes": settings.max_source_upload_bytes},
        )
    return await sources.upload(user, project_id, file.file, size)


@router.get("/{project_id}")
async def read_project(
    project_id: uuid.UUID, user: CurrentUser, projects: ProjectServiceDep
) -> ProjectRead:
    return ProjectRead.model_validate(await projects.get(user, project_id))


@router.patch("/{project_id}")
async def update_project(
    project_id: uuid.UUID, body: ProjectUpdate, user: CurrentUser, projects: ProjectServiceDep
) -> ProjectRead:
    return ProjectRead.model_validate(await projects.update(user, project_id, body))


@router.delete("/{project_id}", status_code=204)
async def delete_project(
    project_id: uuid.UUID, user: CurrentUser, deletion: ProjectDeletionDep
) -> Response:
    """Deletes the project with its builds, sources, shares and documentation jobs. Its running
    builds and jobs are cancelled and its stored objects removed in the background (sources
    that another project uses stay); 503 with nothing deleted when the job queue is down."""
    await deletion.delete(user, project_id)
    return Response(status_code=204)
