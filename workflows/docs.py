"""DocPassWorkflow: a file -> model calls (one per symbol, line or file) -> checked edits.

`plan_doc_job` reads the file and lists the model calls; `generate_doc_text` makes one call
through the AI engine (on gpu_tasks when the local model serves, so that GPU capacity bounds
them and their backlog drives the GPU autoscaler); at most `max_concurrency` run at once. An
answer no provider could make usable is asked for once more with a stricter prompt. Then
`assemble_doc_job` turns the answers into edits, checks them and stores the result. Every end
(completed, failed, cancelled) is recorded and announced, except that of a job that no longer
exists (its project was deleted meanwhile): there is nothing to record, nobody to tell.

Payloads stay bounded: the plan is (`planning`), each model call carries one task, and
assembly gets the tasks without their prompts. A model call heartbeats, so that cancelling
the job reaches the call in flight.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)

from workflows.outcomes import announce_outcome, record_outcome

with workflow.unsafe.imports_passed_through():
    from contracts.docs import (
        ASSEMBLE_DOC_JOB,
        DOC_WORKFLOW,
        GENERATE_DOC_TEXT,
        NOTIFY_DOC_OUTCOME,
        PLAN_DOC_JOB,
        RECORD_DOC_OUTCOME,
        AssembleInput,
        DocJobInput,
        DocJobOutcome,
        DocJobSummary,
        DocPhase,
        DocPlan,
        GeneratedText,
        GenerateInput,
        GenerationTask,
    )
    from contracts.errors import ErrorCode, FailureType
    from contracts.failures import job_error, job_failure
    from contracts.jobs import JobError

# Model calls: an engine call tries every provider in turn, each bounded by its own timeout.
# On gpu_tasks a call first waits for a worker whose model server is ready, for at most the
# job's inference_wait_timeout_s (its schedule-to-start timeout, per attempt; Temporal does not
# retry an attempt that timed out so: the job fails with a message that says why).
GENERATE_TIMEOUT = timedelta(minutes=6)
# generate_doc_text heartbeats every 2 s while it waits for a provider.
GENERATE_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
GENERATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
    non_retryable_error_types=[FailureType.UNUSABLE_OUTPUT],
)
STEP_TIMEOUT = timedelta(minutes=2)
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=[FailureType.INVALID_RESULT, FailureType.JOB_NOT_FOUND],
)


@workflow.defn(name=DOC_WORKFLOW)
class DocPassWorkflow:
    @workflow.run
    async def run(self, request: DocJobInput) -> DocJobSummary:
        try:
            plan: DocPlan = await workflow.execute_activity(
                PLAN_DOC_JOB,
                request.job_id,
                result_type=DocPlan,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
            generated = await self._generate_all(request, plan.tasks)
            summary: DocJobSummary = await workflow.execute_activity(
                ASSEMBLE_DOC_JOB,
                AssembleInput(
                    job_id=request.job_id,
                    tasks=[task.model_copy(update={"messages": []}) for task in plan.tasks],
                    generated=generated,
                    duration_ms=self._elapsed_ms(request),
                    not_planned=plan.not_planned,
                ),
                result_type=DocJobSummary,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
        except ActivityError as failure:
            if is_cancelled_exception(failure):
                await self._finish(request, DocPhase.CANCELLED)
                raise
            error = _job_error(failure, request)
            if not _is_vanished(failure):
                await self._finish(request, DocPhase.FAILED, error=error)
            raise job_failure(error, non_retryable=True) from failure
        except asyncio.CancelledError:
            await self._finish(request, DocPhase.CANCELLED)
            raise
        await self._finish(request, DocPhase.COMPLETED, summary=summary.summary)
        return summary

    async def _generate_all(
        self, request: DocJobInput, tasks: list[GenerationTask]
    ) -> list[GeneratedText]:
        """Every task's answer, `max_concurrency` at a time; the first failure is raised once
        all have settled."""
        slots = asyncio.Semaphore(request.max_concurrency)

        async def generate(task: GenerationTask) -> GeneratedText:
            async with slots:
                try:
                    return await self._generate(request, task, strict=False)
                except ActivityError as failure:
                    if not _is_unusable(failure):
                        raise
                return await self._generate(request, task, strict=True)

        results = await asyncio.gather(*(generate(task) for task in tasks), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [result for result in results if isinstance(result, GeneratedText)]

    async def _generate(
        self, request: DocJobInput, task: GenerationTask, *, strict: bool
    ) -> GeneratedText:
        result: GeneratedText = await workflow.execute_activity(
            GENERATE_DOC_TEXT,
            GenerateInput(task=task, strict=strict),
            result_type=GeneratedText,
            task_queue=request.inference_queue,
            schedule_to_start_timeout=_wait_timeout(request),
            start_to_close_timeout=GENERATE_TIMEOUT,
            heartbeat_timeout=GENERATE_HEARTBEAT_TIMEOUT,
            retry_policy=GENERATE_RETRY,
        )
        return result

    async def _finish(
        self,
        request: DocJobInput,
        phase: DocPhase,
        *,
        summary: str | None = None,
        error: JobError | None = None,
    ) -> None:
        outcome = DocJobOutcome(
            job_id=request.job_id,
            project_id=request.project_id,
            user_id=request.user_id,
            phase=phase,
            file_path=request.file_path,
            duration_ms=self._elapsed_ms(request),
            summary=summary,
            error=error,
        )
        if phase != DocPhase.COMPLETED:  # assemble_doc_job recorded the completed ones
            await record_outcome(RECORD_DOC_OUTCOME, outcome)
        await announce_outcome(NOTIFY_DOC_OUTCOME, outcome, f"job {request.job_id}")

    def _elapsed_ms(self, request: DocJobInput) -> int:
        return int((workflow.now() - request.requested_at).total_seconds() * 1000)


def _is_unusable(failure: ActivityError) -> bool:
    cause = failure.cause
    return isinstance(cause, ApplicationError) and cause.type == FailureType.UNUSABLE_OUTPUT


def _is_vanished(failure: ActivityError) -> bool:
    """The job's row is gone: its project (or its user) was deleted while it ran."""
    cause = failure.cause
    return isinstance(cause, ApplicationError) and cause.type == FailureType.JOB_NOT_FOUND


def _wait_timeout(request: DocJobInput) -> timedelta | None:
    if request.inference_wait_timeout_s is None:
        return None
    return timedelta(seconds=request.inference_wait_timeout_s)


def _no_model_server(failure: ActivityError) -> bool:
    """A model call waited in its queue longer than its schedule-to-start timeout."""
    cause = failure.cause
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


def _job_error(failure: ActivityError, request: DocJobInput) -> JobError:
    """The error clients see: the activity's code, message and details; AI_ERROR otherwise."""
    if _no_model_server(failure):
        waited_s = request.inference_wait_timeout_s
        return JobError(
            code=ErrorCode.AI_ERROR,
            message=f"No model server was ready within {waited_s:g} s: the model call waited "
            f"in task queue {request.inference_queue} and no worker with a ready model server "
            "took it (INFERENCE_WAIT_TIMEOUT_S)",
            details={"task_queue": request.inference_queue, "waited_s": waited_s},
        )
    error = job_error(failure.cause, ErrorCode.AI_ERROR)
    if _is_unusable(failure):
        return JobError(  # a stricter prompt did not help either
            code=ErrorCode.AI_ERROR,
            message="The model's answers were unusable, even with a stricter prompt: "
            + error.message,
            details=error.details,
        )
    return error
