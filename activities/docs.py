"""Activities of DocPassWorkflow. The job's content is read from its AIRequest row, never passed
through Temporal."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import timedelta
from typing import cast, get_args

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.outcomes import outcome_dedupe_key
from contracts.docs import (
    ASSEMBLE_DOC_JOB,
    GENERATE_DOC_TEXT,
    NOTIFY_DOC_OUTCOME,
    PLAN_DOC_JOB,
    RECORD_DOC_OUTCOME,
    AssembleInput,
    DocJobOutcome,
    DocJobSummary,
    DocJobType,
    DocPhase,
    GeneratedText,
    GenerateInput,
    GenerationTask,
    Language,
)
from contracts.errors import ErrorCode, FailureType
from contracts.failures import job_failure
from contracts.jobs import JobError
from core.models import AIRequest
from inference.client.engine import AIEngine, AllProvidersFailed, UnusableAnswer
from services.docs.assembly import InvalidResult, assemble
from services.docs.planning import plan_tasks, stricter
from services.docs.reading import UnusableOutput, read_answer
from services.docs.repository import DocJobRepository
from services.docs.schemas import DocEdits
from services.jobs.lifecycle import record_outcome
from services.notifications.hub import NotificationHub
from services.notifications.schemas import NotificationType
from services.notifications.service import NotificationService

log = logging.getLogger(__name__)

# One job's model calls travel in one workflow's history: keep them bounded.
MAX_TASKS = 200


class DocActivities:
    def __init__(
        self,
        engine: AIEngine,
        sessions: async_sessionmaker[AsyncSession],
        hub: NotificationHub,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.hub = hub

    @activity.defn(name=PLAN_DOC_JOB)
    async def plan_doc_job(self, job_id: uuid.UUID) -> list[GenerationTask]:
        async with self.sessions() as session:
            job = await self._job(session, job_id)
            job.status = DocPhase.RUNNING.value
            await session.commit()
        tasks = plan_tasks(
            DocJobType(job.job_type),
            _language(job.language),
            job.input_text,
            file_path=job.file_path,
        )
        if len(tasks) > MAX_TASKS:
            error = JobError(
                code=ErrorCode.AI_ERROR,
                message=f"The file asks for {len(tasks)} model calls; at most {MAX_TASKS} are "
                "made per job: split the file or pick a narrower job type",
            )
            raise job_failure(error, non_retryable=True)
        return tasks

    @activity.defn(name=GENERATE_DOC_TEXT)
    async def generate_doc_text(self, request: GenerateInput) -> GeneratedText:
        """One model call through the provider chain. No retries here: Temporal owns them."""
        task = stricter(request.task) if request.strict else request.task

        def read(text: str) -> str:
            try:
                return read_answer(task, text)
            except UnusableOutput as unusable:
                raise UnusableAnswer(str(unusable)) from unusable

        try:
            answer = await self.engine.complete(
                [message.model_dump() for message in task.messages],
                max_tokens=task.max_tokens,
                read=read,
            )
        except AllProvidersFailed as failed:
            error = JobError(
                code=ErrorCode.AI_ERROR, message=failed.message, details=failed.details
            )
            if failed.unusable_only:
                raise job_failure(
                    error, type=FailureType.UNUSABLE_OUTPUT, non_retryable=True
                ) from failed
            raise job_failure(error, next_retry_delay=_delay(failed.retry_after_s)) from failed
        completion = answer.completion
        return GeneratedText(
            task_id=task.task_id,
            text=answer.value,
            raw_text=completion.text,
            provider=completion.provider,
            model=completion.model,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            latency_ms=completion.latency_ms,
        )

    @activity.defn(name=ASSEMBLE_DOC_JOB)
    async def assemble_doc_job(self, request: AssembleInput) -> DocJobSummary:
        async with self.sessions() as session:
            job = await self._job(session, request.job_id)
            answers = {generated.task_id: generated.text for generated in request.generated}
            try:
                edits = assemble(
                    DocJobType(job.job_type),
                    _language(job.language),
                    job.input_text,
                    request.tasks,
                    answers,
                    file_path=job.file_path,
                )
            except InvalidResult as invalid:
                message = f"The model's output could not be made into valid edits: {invalid}"
                error = JobError(code=ErrorCode.AI_ERROR, message=message)
                raise job_failure(
                    error, type=FailureType.INVALID_RESULT, non_retryable=True
                ) from invalid
            _record_result(job, edits, request)
            await session.commit()
        return DocJobSummary(
            job_id=request.job_id,
            summary=edits.summary,
            edits=len(edits.edits),
            suggestions=len(edits.suggestions),
        )

    @activity.defn(name=RECORD_DOC_OUTCOME)
    async def record_doc_outcome(self, outcome: DocJobOutcome) -> None:
        async with self.sessions() as session:
            job = await DocJobRepository(session).get(outcome.job_id)
            if job is None:  # the project was deleted meanwhile
                return
            record_outcome(job, outcome.phase, duration_ms=outcome.duration_ms, error=outcome.error)
            await session.commit()

    @activity.defn(name=NOTIFY_DOC_OUTCOME)
    async def notify_doc_outcome(self, outcome: DocJobOutcome) -> None:
        if outcome.phase == DocPhase.CANCELLED:
            return  # the user cancelled it themselves
        payload: dict[str, object] = {
            "job_id": str(outcome.job_id),
            "project_id": str(outcome.project_id),
            "file_path": outcome.file_path,
            "duration_ms": outcome.duration_ms,
        }
        if outcome.phase == DocPhase.COMPLETED:
            kind = NotificationType.DOCS_COMPLETED
            payload["summary"] = outcome.summary
        else:
            kind = NotificationType.DOCS_FAILED
            payload["error"] = outcome.error.model_dump() if outcome.error else None
        async with self.sessions() as session:
            await NotificationService(session, self.hub).notify_if_present(
                outcome.user_id, kind, payload, dedupe_key=outcome_dedupe_key(kind)
            )

    async def _job(self, session: AsyncSession, job_id: uuid.UUID) -> AIRequest:
        job = await DocJobRepository(session).get(job_id)
        if job is None:
            raise ApplicationError(
                f"Documentation job {job_id} no longer exists",
                type=FailureType.JOB_NOT_FOUND,
                non_retryable=True,
            )
        return job


def _record_result(job: AIRequest, edits: DocEdits, request: AssembleInput) -> None:
    """The job's result and who produced it (the provider and model used most)."""
    generated = request.generated
    providers = Counter(item.provider for item in generated)
    models = Counter(item.model for item in generated)
    job.provider = providers.most_common(1)[0][0] if providers else None
    job.model = models.most_common(1)[0][0] if models else None
    job.tokens_in = sum(item.tokens_in for item in generated)
    job.tokens_out = sum(item.tokens_out for item in generated)
    job.output_text = edits.patched_content
    job.result = edits.model_dump(mode="json")
    record_outcome(job, DocPhase.COMPLETED, duration_ms=request.duration_ms, error=None)


def _language(value: str) -> Language:
    if value not in get_args(Language):
        raise ApplicationError(f"unknown language {value!r}", non_retryable=True)
    return cast("Language", value)


def _delay(seconds: float | None) -> timedelta | None:
    """Temporal's next retry waits as long as the providers asked (Retry-After)."""
    return None if seconds is None else timedelta(seconds=seconds)
