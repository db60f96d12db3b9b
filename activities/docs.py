"""Activities of DocPassWorkflow. The job's content is read from its AIRequest row, never passed
through Temporal.

Planning and assembly parse and analyse files of up to 1 MB: seconds of CPU, much of it in
single calls that hold the GIL throughout (Python's parser takes seconds on such a file). So
they run in processes of their own (`off_loop`), never on the worker's event loop nor in a
thread of its process, whose event loop also carries the heartbeats of preview builds; and no
database connection is held meanwhile. A model call heartbeats while it waits, so that
cancelling the job reaches it and closes its HTTP request.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar, cast, get_args

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
    DocPlan,
    GeneratedText,
    GenerateInput,
    Language,
)
from contracts.errors import ErrorCode, FailureType
from contracts.failures import job_failure
from contracts.jobs import JobError
from core.errors import ValidationFailed
from core.models import AIRequest
from inference.client.engine import AIEngine, AllProvidersFailed, UnusableAnswer
from services.docs.assembly import InvalidResult, assemble
from services.docs.planning import DEFAULT_MAX_TASKS, plan_job, stricter
from services.docs.reading import UnusableOutput, read_answer
from services.docs.repository import DocJobRepository
from services.docs.schemas import DocEdits
from services.jobs.lifecycle import record_outcome
from services.notifications.hub import NotificationHub
from services.notifications.schemas import NotificationType
from services.notifications.service import NotificationService

log = logging.getLogger(__name__)

T = TypeVar("T")

# A model call heartbeats this often while it waits (the workflow's heartbeat timeout is
# longer): a cancellation reaches it within about this time.
HEARTBEAT_EVERY_S = 2.0
# Of a model's answer, what is read and kept: answers are asked for in at most 96 tokens, so
# only a provider ignoring `max_tokens` comes near (and its text must not swell payloads).
MAX_ANSWER_CHARS = 4000
# A provider's Retry-After becomes the delay before Temporal's next attempt, up to this.
MAX_RETRY_DELAY = timedelta(minutes=2)
# Processes for planning and assembly, shared by the process's workers; each is replaced after
# this many steps, which gives back the memory a 1 MB file's syntax trees took.
CPU_PROCESSES = 2
CPU_STEPS_PER_PROCESS = 20


class DocActivities:
    def __init__(
        self,
        engine: AIEngine,
        sessions: async_sessionmaker[AsyncSession],
        hub: NotificationHub,
        *,
        max_tasks: int = DEFAULT_MAX_TASKS,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.hub = hub
        self.max_tasks = max_tasks  # model calls one job plans (DOCS_MAX_MODEL_CALLS)

    @activity.defn(name=PLAN_DOC_JOB)
    async def plan_doc_job(self, job_id: uuid.UUID) -> DocPlan:
        """The job's model calls, within its bounds (`planning`); what is left out is counted
        and reported in the job's summary."""
        async with self.sessions() as session:
            job = await self._job(session, job_id)
            job.status = DocPhase.RUNNING.value
            job_type, language = DocJobType(job.job_type), _language(job.language)
            content, file_path = job.input_text, job.file_path
            await session.commit()
        try:
            plan = await off_loop(
                plan_job, job_type, language, content, file_path=file_path, max_tasks=self.max_tasks
            )
        except ValidationFailed as invalid:  # the API checked it already: not retried
            error = JobError(code=ErrorCode.VALIDATION_ERROR, message=invalid.message)
            raise job_failure(error, non_retryable=True) from invalid
        if plan.not_planned:
            log.info(
                "documentation job planned within its bounds",
                extra={
                    "job_id": str(job_id),
                    "tasks": len(plan.tasks),
                    "left_out": plan.not_planned,
                },
            )
        return plan

    @activity.defn(name=GENERATE_DOC_TEXT)
    async def generate_doc_text(self, request: GenerateInput) -> GeneratedText:
        """One model call through the provider chain. No retries here: Temporal owns them."""
        task = stricter(request.task) if request.strict else request.task

        def read(text: str) -> str:
            try:
                return read_answer(task, text[:MAX_ANSWER_CHARS])
            except UnusableOutput as unusable:
                raise UnusableAnswer(str(unusable)) from unusable

        beating = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY_S))
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
        finally:
            beating.cancel()
        completion = answer.completion
        return GeneratedText(
            task_id=task.task_id,
            text=answer.value,
            raw_text=completion.text[:MAX_ANSWER_CHARS],
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
            job_type, language = DocJobType(job.job_type), _language(job.language)
            content, file_path = job.input_text, job.file_path
        answers = {generated.task_id: generated.text for generated in request.generated}
        try:
            edits = await off_loop(
                assemble,
                job_type,
                language,
                content,
                request.tasks,
                answers,
                file_path=file_path,
                not_planned=request.not_planned,
            )
        except InvalidResult as invalid:
            message = f"The model's output could not be made into valid edits: {invalid}"
            error = JobError(code=ErrorCode.AI_ERROR, message=message)
            raise job_failure(
                error, type=FailureType.INVALID_RESULT, non_retryable=True
            ) from invalid
        async with self.sessions() as session:
            job = await self._job(session, request.job_id)
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
    """Temporal's next retry waits as long as the providers asked (Retry-After), at most
    MAX_RETRY_DELAY (a provider asking for hours fails the job after the last attempt instead
    of holding it)."""
    return None if seconds is None else min(timedelta(seconds=seconds), MAX_RETRY_DELAY)


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _cpu_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=CPU_PROCESSES,
                # Not forked: the worker's process runs threads (Temporal's core among them).
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=CPU_STEPS_PER_PROCESS,
            )
        return _pool


async def off_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`function(*args, **kwargs)` in one of the CPU processes (its arguments and result are
    pickled). A process that died (killed for memory, say) is a retryable failure: the pool
    is replaced and Temporal tries the step again."""
    global _pool
    pool = _cpu_pool()
    try:
        return await asyncio.get_running_loop().run_in_executor(
            pool, partial(function, *args, **kwargs)
        )
    except BrokenProcessPool as broken:
        with _pool_lock:
            if _pool is pool:
                _pool = None
        pool.shutdown(wait=False, cancel_futures=True)
        raise ApplicationError("The documentation process stopped unexpectedly") from broken


async def _heartbeat_every(seconds: float) -> None:
    """Heartbeat until cancelled: Temporal answers a heartbeat with the news of a cancellation,
    which then cancels the activity's task (and the HTTP request it awaits)."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(seconds)
