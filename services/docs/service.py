"""Documentation jobs as the API sees them: checked input in, workflow started, status out."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from core.clock import utc_now
from core.config import Settings
from core.errors import Conflict, NotFound, PayloadTooLarge, ServiceUnavailable
from core.models import AIRequest, User
from core.temporal import request_cancellation, start_or_join
from services.common import Page
from services.docs.languages import check_content, detect_language
from services.docs.repository import DocJobRepository
from services.docs.schemas import MAX_CONTENT_BYTES, DocJobCreate, DocJobRead, DocResult
from services.projects.service import ProjectService
from workflows.contracts import (
    CPU_TASK_QUEUE,
    GPU_TASK_QUEUE,
    DocJobInput,
    DocJobType,
    DocPhase,
    JobError,
)

WORKFLOW_NAME = "DocPassWorkflow"
ENDED = frozenset({DocPhase.COMPLETED, DocPhase.FAILED, DocPhase.CANCELLED})


def workflow_id(job_id: uuid.UUID) -> str:
    return f"docs-{job_id}"


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
    def __init__(self, session: AsyncSession, settings: Settings, temporal: Client) -> None:
        self.session = session
        self.settings = settings
        self.temporal = temporal
        self.jobs = DocJobRepository(session)
        self.projects = ProjectService(session)

    async def create(self, owner: User, body: DocJobCreate) -> AIRequest:
        """The job for this request: new, or the identical one already asked for (run again if
        it failed or was cancelled)."""
        size = len(body.content.encode())
        if size > MAX_CONTENT_BYTES:
            raise PayloadTooLarge(
                f"content is {size} bytes; documentation jobs take at most {MAX_CONTENT_BYTES}",
                details={"max_bytes": MAX_CONTENT_BYTES},
            )
        language = detect_language(body.file_path, body.language)
        check_content(body.content, language, body.file_path)
        owner_id = owner.id
        project_id = (await self.projects.get(owner, body.project_id)).id
        key = job_key(project_id, body, language)
        job = await self.jobs.get_by_key(key)
        if job is None:
            job = await self._record(
                AIRequest(
                    project_id=project_id,
                    user_id=owner_id,
                    file_path=body.file_path,
                    job_type=body.job_type.value,
                    status=DocPhase.QUEUED.value,
                    input_text=body.content,
                    job_key=key,
                    language=language,
                )
            )
        elif DocPhase(job.status) in (DocPhase.FAILED, DocPhase.CANCELLED):
            await self._reset_for_another_run(job)
        await self._start_workflow(job)
        return job

    async def _record(self, job: AIRequest) -> AIRequest:
        key = job.job_key
        self.jobs.add(job)
        try:
            await self.session.commit()
            return job
        except IntegrityError:  # an identical request got there first: join it
            await self.session.rollback()
            raced = await self.jobs.get_by_key(key)
            assert raced is not None
            return raced

    async def _reset_for_another_run(self, job: AIRequest) -> None:
        job.status = DocPhase.QUEUED.value
        job.created_at = utc_now()
        job.completed_at = None
        job.error = job.error_code = None
        job.error_details = None
        await self.session.commit()

    async def _start_workflow(self, job: AIRequest) -> None:
        queue = GPU_TASK_QUEUE if self.settings.local_ai_enabled else CPU_TASK_QUEUE
        request = DocJobInput(
            job_id=job.id,
            project_id=job.project_id,
            user_id=job.user_id,
            job_type=DocJobType(job.job_type),
            file_path=job.file_path,
            inference_queue=self.settings.task_queue(queue),
            max_concurrency=self.settings.docs_max_concurrency,
            requested_at=job.created_at,
        )
        await start_or_join(
            self.temporal,
            WORKFLOW_NAME,
            request,
            workflow_id=workflow_id(job.id),
            task_queue=self.settings.task_queue(CPU_TASK_QUEUE),
        )

    async def get(self, owner: User, job_id: uuid.UUID) -> DocJobRead:
        job = await self.jobs.get_owned(job_id, owner.id)
        if job is None:
            raise NotFound("Job not found")
        return await self.describe(job)

    async def describe(self, job: AIRequest) -> DocJobRead:
        """Status from the workflow while it runs; the record (and result) once it has ended."""
        await self.session.refresh(job)
        view = _recorded_view(job, with_result=True)
        if view.status not in ENDED:
            status, error = await self._workflow_status(job)
            if status in ENDED:
                await self.session.refresh(job)  # ended since: the record has the outcome
                view = _recorded_view(job, with_result=True)
                view.status = status
                view.error = view.error or error
        return view

    async def _workflow_status(self, job: AIRequest) -> tuple[DocPhase, dict[str, Any] | None]:
        handle = self._handle(job.id)
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return DocPhase(job.status), None
            raise ServiceUnavailable(
                "Job status is unavailable; retry shortly", details={"dependency": "temporal"}
            ) from exc
        status = description.status
        if status == WorkflowExecutionStatus.RUNNING:
            return DocPhase(job.status), None
        if status == WorkflowExecutionStatus.COMPLETED:
            return DocPhase.COMPLETED, None
        if status in (WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.TERMINATED):
            return DocPhase.CANCELLED, None
        try:
            await handle.result()
        except WorkflowFailureError as failure:
            return DocPhase.FAILED, JobError.from_failure(failure.cause, "AI_ERROR").model_dump()
        return DocPhase.FAILED, None

    async def list(
        self, owner: User, project_id: uuid.UUID, *, limit: int, offset: int
    ) -> Page[DocJobRead]:
        project = await self.projects.get(owner, project_id)
        jobs, total = await self.jobs.list_for_project(project.id, limit=limit, offset=offset)
        items = [_recorded_view(job, with_result=False) for job in jobs]
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def cancel(self, owner: User, job_id: uuid.UUID) -> DocJobRead:
        job = await self.jobs.get_owned(job_id, owner.id)
        if job is None:
            raise NotFound("Job not found")
        if DocPhase(job.status) in ENDED:
            raise Conflict(f"The job is {job.status} already")
        await request_cancellation(self.temporal, workflow_id(job.id))
        return await self.describe(job)

    def _handle(self, job_id: uuid.UUID) -> WorkflowHandle[Any, Any]:
        return self.temporal.get_workflow_handle(workflow_id(job_id))


def _recorded_view(job: AIRequest, *, with_result: bool) -> DocJobRead:
    error = None
    if job.error_code:
        error = {
            "code": job.error_code,
            "message": job.error or "",
            "details": job.error_details or {},
        }
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
        status=DocPhase(job.status),
        created_at=job.created_at,
        completed_at=job.completed_at,
        error=error,
        result=result,
    )
