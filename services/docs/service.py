"""Documentation jobs as the API sees them: checked input in, the job recorded and its workflow
started (through the job lifecycle that preview builds share), status and result out."""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from contracts.docs import DOC_WORKFLOW, DocJobInput, DocJobType, DocPhase
from contracts.errors import ErrorCode
from contracts.jobs import TaskQueue
from core.config import Settings
from core.db import without_connection
from core.errors import NotFound, PayloadTooLarge
from core.models import AIRequest, User
from services.common import Page
from services.docs.languages import check_content, detect_language
from services.docs.repository import DocJobRepository
from services.docs.schemas import (
    MAX_CONTENT_BYTES,
    DocJobAccepted,
    DocJobCreate,
    DocJobRead,
    DocResult,
)
from services.jobs.lifecycle import JobKind, JobLifecycle, JobStatus
from services.projects.service import ProjectService
from services.quotas import DOC_JOB_QUOTA, QuotaService

DOC_JOBS = JobKind("job", DocPhase, DOC_WORKFLOW, ErrorCode.AI_ERROR)


def job_key(project_id: uuid.UUID, body: DocJobCreate, language: str) -> str:
    """Equal for identical requests (a client retrying shares the job), scoped to the project."""
    key = json.dumps(
        {
            "project": str(project_id),
            "type": body.job_type.value,
            "path": body.file_path,
            "language": language,
            "content": hashlib.sha256(body.content.encode()).hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()


class DocJobService:
    def __init__(
        self, session: AsyncSession, settings: Settings, temporal: Client, quotas: QuotaService
    ) -> None:
        self.session = session
        self.settings = settings
        self.quotas = quotas
        self.jobs = DocJobRepository(session)
        self.projects = ProjectService(session)
        self.lifecycle: JobLifecycle[AIRequest, DocPhase] = JobLifecycle(
            session, temporal, DOC_JOBS, task_queue=settings.task_queue(TaskQueue.CPU)
        )

    async def create(self, owner: User, body: DocJobCreate) -> DocJobAccepted:
        """The job for this request: new, the identical one already asked for (joined while it
        runs, answered once completed), or that one run again if it failed or was cancelled."""
        size = len(body.content.encode())
        if size > MAX_CONTENT_BYTES:
            raise PayloadTooLarge(
                f"content is {size} bytes; documentation jobs take at most {MAX_CONTENT_BYTES}",
                details={"max_bytes": MAX_CONTENT_BYTES},
            )
        language = detect_language(body.file_path, body.language)
        # Plain ids first: losing an insert race rolls the session back and expires `owner`.
        owner_id = owner.id
        project_id = (await self.projects.get(owner, body.project_id)).id
        # Parsing and hashing up to 1 MB is CPU work: only for the project's owner, off the
        # event loop, and with no pooled connection held.
        await without_connection(
            self.session, check_content, body.content, language, body.file_path
        )
        key = await without_connection(self.session, job_key, project_id, body, language)
        await self.quotas.start_job(owner_id, DOC_JOB_QUOTA, key)
        job = await self.lifecycle.submit(
            await self.jobs.get_by_key(key),
            new=lambda: AIRequest(
                project_id=project_id,
                user_id=owner_id,
                file_path=body.file_path,
                job_type=body.job_type.value,
                status=DocPhase.QUEUED.value,
                input_text=body.content,
                job_key=key,
                language=language,
            ),
            find=lambda: self.jobs.get_by_key(key),
            workflow_input=self._workflow_input,
        )
        return DocJobAccepted(
            job_id=job.id,
            status=DocPhase(job.status),
            status_url=f"{self.settings.base_url}/api/v1/docs/jobs/{job.id}",
        )

    def _workflow_input(self, job: AIRequest) -> DocJobInput:
        queue = TaskQueue.GPU if self.settings.local_ai_enabled else TaskQueue.CPU
        return DocJobInput(
            job_id=job.id,
            project_id=job.project_id,
            user_id=job.user_id,
            job_type=DocJobType(job.job_type),
            file_path=job.file_path,
            inference_queue=self.settings.task_queue(queue),
            max_concurrency=self.settings.docs_max_concurrency,
            requested_at=job.requested_at,
            # Only gpu_tasks may have no worker polling (the gpu pool is at zero or starting).
            inference_wait_timeout_s=(
                self.settings.inference_wait_timeout_s if queue == TaskQueue.GPU else None
            ),
        )

    async def get(self, owner: User, job_id: uuid.UUID) -> DocJobRead:
        job = await self.jobs.get_owned(job_id, owner.id)
        if job is None:
            raise NotFound("Job not found")
        return _view(job, await self.lifecycle.status(job), with_result=True)

    async def list(
        self, owner: User, project_id: uuid.UUID, *, limit: int, offset: int
    ) -> Page[DocJobRead]:
        """The project's jobs, newest first, as their rows have them, without their results."""
        project = await self.projects.get(owner, project_id)
        jobs, total = await self.jobs.list_for_project(project.id, limit=limit, offset=offset)
        items = [_view(job, self.lifecycle.recorded(job), with_result=False) for job in jobs]
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def cancel(self, owner: User, job_id: uuid.UUID) -> DocJobRead:
        job = await self.jobs.get_owned(job_id, owner.id)
        if job is None:
            raise NotFound("Job not found")
        return _view(job, await self.lifecycle.cancel(job), with_result=True)


def _view(job: AIRequest, status: JobStatus[DocPhase], *, with_result: bool) -> DocJobRead:
    result = None
    if with_result and job.result is not None:
        result = DocResult(
            **job.result,
            provider=job.provider or "",
            model=job.model or "",
            tokens_in=job.tokens_in or 0,
            tokens_out=job.tokens_out or 0,
            duration_ms=job.duration_ms or 0,
        )
    return DocJobRead(
        job_id=job.id,
        project_id=job.project_id,
        job_type=DocJobType(job.job_type),
        file_path=job.file_path,
        language=job.language,
        status=status.phase,
        created_at=job.requested_at,
        completed_at=job.completed_at,
        error=status.error,
        result=result,
    )
