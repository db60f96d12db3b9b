import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import CurrentUser, DocJobServiceDep, Limit, Offset
from services.common import DEFAULT_PAGE_SIZE, Page
from services.docs.schemas import DocJobAccepted, DocJobCreate, DocJobRead

router = APIRouter(prefix="/docs", tags=["docs"])


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
async def create_job(
    body: DocJobCreate, user: CurrentUser, jobs: DocJobServiceDep
) -> DocJobAccepted:
    """Document a file: file summary, inline comments, docstrings, rename suggestions or a
    full pass. Identical requests share one job. Poll `status_url` for the edits."""
    return await jobs.create(user, body)


@router.get("/jobs")
async def list_jobs(
    project_id: Annotated[uuid.UUID, Query(description="The project whose jobs to list")],
    user: CurrentUser,
    jobs: DocJobServiceDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    offset: Offset = 0,
) -> Page[DocJobRead]:
    """A project's jobs, newest first, without their results (read one job for that)."""
    return await jobs.list(user, project_id, limit=limit, offset=offset)


@router.get("/jobs/{job_id}")
async def read_job(job_id: uuid.UUID, user: CurrentUser, jobs: DocJobServiceDep) -> DocJobRead:
    """Status from the workflow; when completed, the edits, patched content and diff."""
    return await jobs.get(user, job_id)


@router.delete("/jobs/{job_id}", status_code=status.HTTP_202_ACCEPTED)
async def cancel_job(job_id: uuid.UUID, user: CurrentUser, jobs: DocJobServiceDep) -> DocJobRead:
    """Cancel a job that has not ended."""
    return await jobs.cancel(user, job_id)
